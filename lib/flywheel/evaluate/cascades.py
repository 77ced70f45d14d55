"""Cascades: a student that answers when it is confident and defers the rest to the production router.

The threshold is chosen on the validation split only (never on test), a deferred item taking the production
router's logged decision: the least deferral whose cascade is no more than `eval.cascade_drop_points`
(default: the promotion margin) below production on the same validation items. On ~100-300 items the least
deferral whose point estimate qualifies is an optimistic pick (the search keeps whichever threshold the noise
favours), so with `eval.cascade_confidence` set (default 0.9) a deferral qualifies only when the upper
one-sided confidence bound of the paired accuracy drop (production minus cascade; the Agresti-Min interval
for matched proportions, which adds half an item to each cell of the 2x2 table) is within the margin, and
the deferrals are tested as a fixed sequence, from deferring everything down, stopping at the first that
fails: a lucky threshold below a failing one is never chosen. Fewer validation items give wider bounds, so
more deferral. An out-of-scope question the student is unsure about defers too: that deferral is the
cascade's abstention, so no separate out-of-scope mechanism is needed.

On test, a cascade is scored like any candidate (`<student>+defer`), with its deferral share, a cost of
student cost + deferral share x production cost, and per-query latency = the student's measured latency plus
the production router's logged latency on the deferred items.

A deferred item takes the production model's own decision (logged or in shadow): where a small router
answered and production never saw the item, the cascade's decision is unknown, so thresholds are chosen on
the validation items with a production decision, and on test a cascade is scored like the baseline, on the
items with one (`n` = the baseline's `baseline_n`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from flywheel.core.accuracy import accuracy_with_ci
from flywheel.core.cascade import cascade_decisions
from flywheel.evaluate.metrics import latency_stats, mcnemar_paired
from flywheel.evaluate.slices import Slices, agreement

SUFFIX = "+defer"
_EPS = 1e-9


def cascade_name(student: str) -> str:
    return f"{student}{SUFFIX}"


@dataclass
class ThresholdChoice:
    """The threshold chosen on validation, or None with the reason there is no cascade. `drop_upper` is the
    upper confidence bound of production's accuracy minus the cascade's at that threshold (None without a
    confidence level)."""

    threshold: float | None
    deferral_share: float | None = None
    accuracy: float | None = None
    production_accuracy: float | None = None
    reason: str | None = None
    drop_upper: float | None = None


def paired_drop_upper(only_production_right: np.ndarray, only_cascade_right: np.ndarray, n: int, z: float):
    """Upper bound(s) of production's accuracy minus the cascade's on the same n items, from the discordant
    counts: the Agresti-Min adjusted Wald interval (half an item added to each of the four cells)."""
    b = np.asarray(only_production_right, dtype=float) + 0.5
    c = np.asarray(only_cascade_right, dtype=float) + 0.5
    total = n + 2.0
    drop = (b - c) / total
    variance = np.maximum((b + c) - (b - c) ** 2 / total, 0.0) / total**2
    return drop + z * np.sqrt(variance)


def choose_threshold(
    proba: np.ndarray,
    labels: list[str],
    truth: list[str],
    production: list[str | None],
    max_drop_points: float,
    confidence: float | None = None,
) -> ThresholdChoice:
    """The least deferral that keeps the cascade within `max_drop_points` of production, on these (validation)
    items: on the point estimate (`confidence` None), or on the upper one-sided `confidence` bound of the
    paired drop, deferrals tested from most to least and the first failure ending the search (see the module
    docstring). Candidate thresholds lie midway between consecutive distinct confidences, so each defers
    exactly the least confident items below it. A cascade that must defer everything is none; one that needs
    no deferral is the student alone (its own row): both return threshold None with the reason."""
    proba = np.asarray(proba, dtype=float)
    n = len(truth)
    if n == 0:
        return ThresholdChoice(None, reason="no validation items to choose a threshold on")
    confidence_of = proba.max(axis=1)
    order = np.argsort(confidence_of, kind="stable")
    sorted_conf = confidence_of[order]
    student = np.asarray(labels, dtype=object)[proba.argmax(axis=1)]
    student_ok = (student == np.asarray(truth, dtype=object))[order]
    production_ok = np.array([p is not None and p == t for p, t in zip(production, truth, strict=True)])
    production_ok = production_ok[order]

    def answered(count: np.ndarray) -> np.ndarray:  # summed over the items answered when k are deferred
        return np.concatenate([np.cumsum(count[::-1])[::-1], [0]])

    # correct answers when the k least confident items are deferred, k = 0..n
    deferred_ok = np.concatenate([[0], np.cumsum(production_ok)])
    accuracy = (deferred_ok + answered(student_ok)) / n
    production_accuracy = float(production_ok.mean())
    boundary = np.ones(n + 1, dtype=bool)
    boundary[1:n] = sorted_conf[:-1] < sorted_conf[1:]  # a threshold cannot split tied confidences
    margin = max_drop_points / 100
    upper = None
    if confidence is None:
        within = boundary & (accuracy >= production_accuracy - margin - _EPS)
        k = int(np.flatnonzero(within)[0])  # k = n always qualifies: it is production itself
        rule = f"within {max_drop_points:g} points of production"
    else:
        only_production = answered(production_ok & ~student_ok)
        only_cascade = answered(~production_ok & student_ok)
        upper = paired_drop_upper(only_production, only_cascade, n, norm.ppf(confidence))
        failing = np.flatnonzero(boundary[:n] & (upper[:n] > margin + _EPS))
        k = int(failing[-1]) + 1 if len(failing) else 0  # every deferral from k up to all qualifies
        while not boundary[k]:  # the first splittable threshold above the last failure
            k += 1
        rule = f"within {max_drop_points:g} points of production at {100 * confidence:g}% confidence"
    floor = f"{100 * (production_accuracy - margin):.1f}%"
    if k == n:
        return ThresholdChoice(
            None,
            production_accuracy=production_accuracy,
            reason=f"only deferring every validation query (all {n}) keeps it {rule} ({floor}): "
            "that is no cascade",
        )
    bound = None if upper is None else float(upper[k])
    if k == 0:
        return ThresholdChoice(
            None,
            production_accuracy=production_accuracy,
            reason=f"the student alone is {rule} on validation: no deferral needed (see its own row)",
            drop_upper=bound,
        )
    return ThresholdChoice(
        threshold=float((sorted_conf[k - 1] + sorted_conf[k]) / 2),
        deferral_share=k / n,
        accuracy=float(accuracy[k]),
        production_accuracy=production_accuracy,
        drop_upper=bound,
    )


def cascade_row(
    student_row: dict,
    student_seconds: list[float],
    proba: np.ndarray,
    labels: list[str],
    choice: ThresholdChoice,
    test: pd.DataFrame,
    logged_seconds: np.ndarray,
    baseline: dict,
    slices: Slices,
    alpha: float,
    production: list[str | None] | None = None,
) -> tuple[dict, list[str | None]]:
    """The cascade on test: its row (like a candidate's, plus threshold and deferral) and decisions.

    `student_seconds` are the student's batch-1 latencies measured here, reused in turn across the test
    items; `logged_seconds` the production router's logged latency per test item; `production` its decision
    per test item, None where unknown (default: the logged `routed_expert`). Scored on the items with one."""
    production = test["routed_expert"].tolist() if production is None else list(production)
    decisions, deferred = cascade_decisions(proba, labels, choice.threshold, production)
    share = float(deferred.mean())
    student = np.resize(np.asarray(student_seconds, dtype=float), len(test))
    latency = latency_stats(student + np.where(deferred, np.asarray(logged_seconds, dtype=float), 0.0))
    latency["latency_samples"] = latency.pop("n")
    known = np.array([p is not None for p in production], dtype=bool)
    truth = [t for t, k in zip(test["label"], known, strict=True) if k]
    scored = [d for d, k in zip(decisions, known, strict=True) if k]
    production_known = [p for p in production if p is not None]
    paired = mcnemar_paired(truth, production_known, scored)
    row = {
        "name": cascade_name(student_row["name"]),
        "kind": "cascade",
        "student": student_row["name"],
        **accuracy_with_ci(truth, scored, alpha=alpha),
        "agreement": agreement(scored, production_known),
        **slices.subset(known).scores(scored, truth, alpha),
        "threshold": choice.threshold,
        "deferral_share": share,
        "validation_deferral_share": choice.deferral_share,
        "validation_accuracy": choice.accuracy,
        "production_validation_accuracy": choice.production_accuracy,
        "validation_drop_upper": choice.drop_upper,
        **latency,
        "latency_source": "student measured here (batch 1) + production's logged latency on deferred queries",
        "cost_per_1k": student_row["cost_per_1k"] + share * baseline["cost_per_1k"],
        "cost_basis": f"student ({student_row['cost_basis']}) + deferral share x production "
        f"({baseline['cost_basis']})",
        "mcnemar_p": paired["p_value"],
        "only_baseline_correct": paired["a_only_correct"],
        "only_candidate_correct": paired["b_only_correct"],
        "parameters": student_row.get("parameters"),
        "bytes_on_disk": student_row.get("bytes_on_disk"),
        "is_baseline": False,
    }
    return row, decisions
