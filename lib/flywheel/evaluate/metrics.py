"""Scoring a router's decisions against the ground truth.

Predictions are expert names, or None when the model's output could not be parsed into one;
an unparsed prediction always counts as wrong. Accuracy with its interval lives in `flywheel.core.accuracy`
(the flywheel's gate uses it too).

scikit-learn and statsmodels compute them. Hugging Face `evaluate` is not used: its metrics are scripts
fetched from the Hub at `evaluate.load`, which fails offline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from statsmodels.stats.contingency_tables import mcnemar

from flywheel.core.accuracy import check_lengths, correct

UNPARSED = "(unparsed)"
EXACT_BELOW = 25  # McNemar: exact binomial test when there are fewer discordant pairs than this


def mcnemar_paired(y_true: Sequence[str], pred_a: Sequence[str | None], pred_b: Sequence[str | None]) -> dict:
    """McNemar's test of two routers scored on the same items.

    Only the discordant pairs matter: items that exactly one of the two got right. With fewer than
    25 of them the exact two-sided binomial test is used, otherwise chi-square with continuity
    correction. With no discordant pairs at all the two cannot be told apart: p = 1.

    Returns {"a_only_correct", "b_only_correct", "statistic", "p_value", "exact"}.
    """
    check_lengths(y_true, pred_a, pred_b)
    ok_a, ok_b = correct(y_true, pred_a), correct(y_true, pred_b)
    a_only, b_only = int((ok_a & ~ok_b).sum()), int((~ok_a & ok_b).sum())
    exact = a_only + b_only < EXACT_BELOW
    if a_only + b_only == 0:
        return {"a_only_correct": 0, "b_only_correct": 0, "statistic": 0.0, "p_value": 1.0, "exact": exact}
    table = [[int((ok_a & ok_b).sum()), a_only], [b_only, int((~ok_a & ~ok_b).sum())]]
    result = mcnemar(table, exact=exact, correction=True)
    return {
        "a_only_correct": a_only,
        "b_only_correct": b_only,
        "statistic": float(result.statistic),
        "p_value": float(result.pvalue),
        "exact": exact,
    }


def _fill_unparsed(y_pred: Sequence[str | None]) -> list[str]:
    return [UNPARSED if p is None else p for p in y_pred]


def per_expert_report(
    y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]
) -> pd.DataFrame:
    """Precision, recall, F1 and support per expert (index = expert, in the order of `labels`).

    An unparsed prediction lowers the recall of the true expert and the precision of none.
    """
    check_lengths(y_true, y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        list(y_true), _fill_unparsed(y_pred), labels=list(labels), zero_division=0
    )
    return pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support},
        index=pd.Index(list(labels), name="expert"),
    )


def confusion(
    y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """Confusion counts: returns (matrix, col_labels).

    The matrix has shape (len(labels), len(col_labels)): rows are the true experts in the order of
    `labels`, columns the predicted ones. col_labels is `labels`, plus a last "(unparsed)" column
    only when some prediction is None or names no known expert.
    """
    check_lengths(y_true, y_pred)
    labels = list(labels)
    unknown = sorted(set(y_true) - set(labels))
    if unknown:
        raise ValueError(f"true labels not in labels: {unknown}")
    known = set(labels)
    preds = [p if p in known else UNPARSED for p in y_pred]
    cols = [*labels, UNPARSED]
    matrix = confusion_matrix(list(y_true), preds, labels=cols)[: len(labels)]
    if matrix[:, -1].sum() == 0:
        return matrix[:, :-1], labels
    return matrix, cols


def latency_stats(seconds: Sequence[float]) -> dict:
    """Median, 95th percentile (linear interpolation) and mean of latencies given in seconds, in ms.

    Returns {"p50_ms", "p95_ms", "mean_ms", "n"}.
    """
    ms = np.asarray(seconds, dtype=float) * 1000.0
    if ms.size == 0:
        raise ValueError("no latencies")
    p50, p95 = np.percentile(ms, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "mean_ms": float(ms.mean()), "n": int(ms.size)}
