"""Cascades: a student that answers when it is confident and defers the rest to the production router.

The threshold is chosen on the validation split only (never on test): the least deferral whose cascade
accuracy stays within `eval.cascade_target_points` (by default half the promotion margin: the least
deferral found on ~100 items is an optimistic pick) of the production router's on the same validation items,
a deferred item taking the production router's logged decision. An out-of-scope question the student is
unsure about defers too: that deferral is the cascade's abstention, so no separate out-of-scope mechanism is
needed.

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

from flywheel.core.cascade import cascade_decisions
from flywheel.evaluate.metrics import accuracy_with_ci, latency_stats, mcnemar_paired
from flywheel.evaluate.slices import Slices, agreement

SUFFIX = "+defer"
_EPS = 1e-9


def cascade_name(student: str) -> str:
    return f"{student}{SUFFIX}"


@dataclass
class ThresholdChoice:
    """The threshold chosen on validation, or None with the reason there is no cascade."""

    threshold: float | None
    deferral_share: float | None = None
    accuracy: float | None = None
    production_accuracy: float | None = None
    reason: str | None = None


def choose_threshold(
    proba: np.ndarray,
    labels: list[str],
    truth: list[str],
    production: list[str | None],
    max_drop_points: float,
) -> ThresholdChoice:
    """The least deferral that keeps the cascade within `max_drop_points` of production, on these (validation)
    items. Candidate thresholds lie midway between consecutive distinct confidences, so each defers exactly
    the least confident items below it. A cascade that must defer everything is none; one that needs no
    deferral is the student alone (its own row): both return threshold None with the reason."""
    proba = np.asarray(proba, dtype=float)
    n = len(truth)
    if n == 0:
        return ThresholdChoice(None, reason="no validation items to choose a threshold on")
    confidence = proba.max(axis=1)
    order = np.argsort(confidence, kind="stable")
    sorted_conf = confidence[order]
    student = np.asarray(labels, dtype=object)[proba.argmax(axis=1)]
    student_ok = (student == np.asarray(truth, dtype=object))[order]
    production_ok = np.array([p is not None and p == t for p, t in zip(production, truth, strict=True)])
    production_ok = production_ok[order]
    # correct answers when the k least confident items are deferred, k = 0..n
    deferred_ok = np.concatenate([[0], np.cumsum(production_ok)])
    answered_ok = student_ok.sum() - np.concatenate([[0], np.cumsum(student_ok)])
    accuracy = (deferred_ok + answered_ok) / n
    production_accuracy = float(production_ok.mean())
    boundary = np.ones(n + 1, dtype=bool)
    boundary[1:n] = sorted_conf[:-1] < sorted_conf[1:]  # a threshold cannot split tied confidences
    within = boundary & (accuracy >= production_accuracy - max_drop_points / 100 - _EPS)
    k = int(np.flatnonzero(within)[0])  # k = n always qualifies: it is production itself
    floor = f"{100 * (production_accuracy - max_drop_points / 100):.1f}%"
    if k == n:
        return ThresholdChoice(
            None,
            production_accuracy=production_accuracy,
            reason=f"only deferring every validation query keeps it within {max_drop_points:g} points of "
            f"production ({floor}): that is no cascade",
        )
    if k == 0:
        return ThresholdChoice(
            None,
            production_accuracy=production_accuracy,
            reason=f"the student alone is within {max_drop_points:g} points of production on validation: "
            "no deferral needed (see its own row)",
        )
    return ThresholdChoice(
        threshold=float((sorted_conf[k - 1] + sorted_conf[k]) / 2),
        deferral_share=k / n,
        accuracy=float(accuracy[k]),
        production_accuracy=production_accuracy,
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
