"""Accuracy with its confidence interval: the eval stage scores routers with it, the flywheel's gate judges
a week's audited items with it.

Predictions are expert names, or None when a model's output could not be parsed into one; an unparsed
prediction always counts as wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from statsmodels.stats.proportion import proportion_confint


def check_lengths(y_true: Sequence, *preds: Sequence) -> None:
    if len(y_true) == 0:
        raise ValueError("no items to score")
    for pred in preds:
        if len(pred) != len(y_true):
            raise ValueError(f"length mismatch: {len(y_true)} true labels, {len(pred)} predictions")


def correct(y_true: Sequence[str], y_pred: Sequence[str | None]) -> np.ndarray:
    """Per item: the prediction is the true label (None never is)."""
    return np.array([p is not None and p == t for t, p in zip(y_true, y_pred, strict=True)], dtype=bool)


def accuracy_with_ci(y_true: Sequence[str], y_pred: Sequence[str | None], alpha: float = 0.05) -> dict:
    """Accuracy with a Wilson score interval at confidence 1 - alpha.

    Returns {"accuracy", "ci_low", "ci_high", "n", "correct"}.
    """
    check_lengths(y_true, y_pred)
    right = int(correct(y_true, y_pred).sum())
    n = len(y_true)
    low, high = proportion_confint(right, n, alpha=alpha, method="wilson")
    return {"accuracy": right / n, "ci_low": float(low), "ci_high": float(high), "n": n, "correct": right}
