"""The online gate: each week's audited items (the experts' blind labels) judge the router in service and a
candidate in its shadow week.

The gate's floor is the production model's accuracy on the unbiased test (the latest cycle's) minus the
promotion margin. A week's audit holds a few dozen items, so a point estimate below the floor is weak
evidence: a router fails the gate when the upper end of its accuracy's confidence interval is below the
floor (it is worse than allowed with 1 - alpha confidence). Promotion asks more than not failing: a shadow
candidate passes when its accuracy itself is at or above the floor and it agrees with the router in service
on at least `min_agreement` of its shadow queries; it fails when the upper end is below the floor or it
disagrees, and between the two the verdict waits for more audited items (the asymmetry keeps a router
serving on thin evidence of a fault, and keeps a candidate out on thin evidence of merit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from flywheel.core.accuracy import accuracy_with_ci


@dataclass(frozen=True)
class Verdict:
    """One router judged on one week's audited items. `passed` is None when too few items were audited."""

    model: str
    passed: bool | None
    reviewed: int
    floor: float
    accuracy: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    agreement: float | None = None
    reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def judge(
    model: str,
    decisions: pd.Series,
    labels: pd.Series,
    floor: float,
    min_reviewed: int,
    alpha: float = 0.05,
    agreement: float | None = None,
    min_agreement: float | None = None,
    to_promote: bool = False,
) -> Verdict:
    """`decisions` and `labels` are indexed by interaction id; the items judged are those with both.
    `to_promote`: judge a candidate (pass only at or above the floor; None in between)."""
    shared = labels.index.intersection(decisions.dropna().index)
    n = len(shared)
    if n < min_reviewed:
        why = f"{n} audited items this week (fewer than {min_reviewed}): no verdict yet"
        return Verdict(model, None, n, floor, agreement=agreement, reason=why)
    scored = accuracy_with_ci(labels.loc[shared].tolist(), decisions.loc[shared].tolist(), alpha=alpha)
    low, high = 100 * scored["ci_low"], 100 * scored["ci_high"]
    accuracy = f"accuracy {100 * scored['accuracy']:.1f}% [{low:.1f}, {high:.1f}] on {n} audited items"
    gate = f"the gate's {100 * floor:.1f}%"
    passed: bool | None
    if scored["ci_high"] < floor:  # surely below: fails (a router in service is rolled back)
        passed, reason = False, f"{accuracy} is below {gate}"
    elif min_agreement is not None and agreement is not None and agreement < min_agreement:
        passed = False
        reason = f"agrees with the router in service on {100 * agreement:.1f}% (< {100 * min_agreement:.0f}%)"
    elif to_promote and scored["accuracy"] < floor:  # a candidate must reach the floor, not only maybe
        passed = None
        reason = f"{accuracy} is under {gate} but not surely below it: no verdict yet"
    else:
        passed, reason = True, f"{accuracy} holds {gate}"
        if agreement is not None:
            reason += f"; agreement with the router in service {100 * agreement:.1f}%"
    return Verdict(
        model, passed, n, floor, scored["accuracy"], scored["ci_low"], scored["ci_high"], agreement, reason
    )


def agreement_between(a: pd.Series, b: pd.Series) -> float | None:
    """Share of the ids decided by both where the decisions are the same (None: none shared)."""
    shared = a.dropna().index.intersection(b.dropna().index)
    if not len(shared):
        return None
    return float((a.loc[shared] == b.loc[shared]).mean())


def costs_more(
    candidate: float | None, in_service: float | None, production: float | None, tie_share: float
) -> bool:
    """Whether a candidate's cost per 1k queries is above the router in service's by more than a tie
    (`tie_share` of production's cost per 1k, as in the promotion rule); unknown costs never block."""
    if candidate is None or in_service is None or production is None:
        return False
    return candidate > in_service + tie_share * production
