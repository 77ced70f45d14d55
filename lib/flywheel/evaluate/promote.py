"""The promotion rule: which candidate, if any, replaces the production router.

Candidates are single students and cascades (a student deferring its least confident queries to the
baseline) alike. A candidate is eligible when it is cheaper than the baseline, loses at most `max_drop_points`
percentage points of accuracy, and is not significantly worse on the paired test (McNemar
p < alpha with accuracy below the baseline's). The cheapest eligible candidate is promoted. Costs within
`cost_tie_share` of the baseline's cost per 1k of the cheapest count as the same cost (a student's cost comes
from its measured latency, which a busy machine changes, and a difference that small is not worth accuracy):
among those the most accurate is promoted, then the first by name, so the same data give the same choice.
"""

from __future__ import annotations

from dataclasses import dataclass

_EPS = 1e-9  # float slack when comparing accuracies and costs


@dataclass
class PromotionRule:
    """Thresholds of the promotion rule (accuracies are fractions; the drop is in percentage points)."""

    max_drop_points: float = 2.0  # candidate accuracy >= baseline accuracy - 2 points
    alpha: float = 0.05  # and not significantly worse: McNemar p >= alpha, OR candidate better
    require_cheaper: bool = True  # and cheaper than the baseline (skipped when its cost is unknown)
    cost_tie_share: float = 0.01  # costs within 1% of the baseline's of the cheapest are a tie


def _pct(accuracy: float) -> str:
    return f"{100 * accuracy:.1f}%"


def _rejection(baseline: dict, candidate: dict, rule: PromotionRule) -> str | None:
    """Why `candidate` is not eligible, or None when it is."""
    base_acc, acc = baseline["accuracy"], candidate["accuracy"]
    drop = 100 * (base_acc - acc)
    if drop > rule.max_drop_points + _EPS:
        return (
            f"accuracy {_pct(acc)} is {drop:.1f} points below the baseline's {_pct(base_acc)} "
            f"(at most {rule.max_drop_points:g} allowed)"
        )
    worse = acc < base_acc - _EPS
    p = candidate.get("mcnemar_p")
    if worse and p is None:
        return "less accurate than the baseline and no paired test (mcnemar_p) to judge by"
    if worse and p < rule.alpha:
        return f"significantly worse than the baseline (McNemar p = {p:.3g} < {rule.alpha:g})"
    base_cost = baseline.get("cost_per_1k")
    if rule.require_cheaper and base_cost is not None and candidate["cost_per_1k"] >= base_cost - _EPS:
        return (
            f"not cheaper than the baseline (${candidate['cost_per_1k']:.4g} vs ${base_cost:.4g} "
            "per 1k queries)"
        )
    return None


def choose_promotion(baseline: dict, candidates: list[dict], rule: PromotionRule) -> dict:
    """Pick the cheapest eligible candidate.

    `baseline` and each candidate carry "name", "accuracy" (fraction) and "cost_per_1k" (USD);
    candidates also "mcnemar_p" from their paired test against the baseline (may be None only
    when the candidate is at least as accurate).

    Returns {"promoted": name or None, "reason": sentence, "eligible": [names, cheapest first],
    "rejected": {name: reason}}.
    """
    names = [c["name"] for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique: {names}")
    rejected: dict[str, str] = {}
    eligible: list[dict] = []
    for candidate in candidates:
        reason = _rejection(baseline, candidate, rule)
        if reason is None:
            eligible.append(candidate)
        else:
            rejected[candidate["name"]] = reason
    eligible.sort(key=lambda c: (c["cost_per_1k"], -c["accuracy"], c["name"]))
    if eligible:  # the most accurate of those as cheap as the cheapest, within the tie
        tie = rule.cost_tie_share * (baseline.get("cost_per_1k") or 0.0)
        cheap = [c for c in eligible if c["cost_per_1k"] <= eligible[0]["cost_per_1k"] + tie + _EPS]
        chosen = min(cheap, key=lambda c: (-c["accuracy"], c["name"]))
        eligible.remove(chosen)
        eligible.insert(0, chosen)

    if not candidates:
        reason = f"no candidates were evaluated; {baseline['name']} stays in production"
    elif not eligible:
        reason = f"no candidate meets the promotion rule; {baseline['name']} stays in production"
    else:
        best = eligible[0]
        p = best.get("mcnemar_p")
        p_text = "" if p is None else f", McNemar p = {p:.3g}"
        base_cost = baseline.get("cost_per_1k")
        base_cost_text = "unknown" if base_cost is None else f"${base_cost:.4g}"
        cheapest = min(c["cost_per_1k"] for c in eligible)
        what = (
            "the cheapest eligible candidate"
            if best["cost_per_1k"] <= cheapest + _EPS
            else f"the most accurate of the eligible candidates within ${tie:.2g} per 1k of the cheapest"
        )
        reason = (
            f"{best['name']} is {what}: ${best['cost_per_1k']:.4g} per 1k queries "
            f"vs {base_cost_text} for {baseline['name']}, accuracy "
            f"{_pct(best['accuracy'])} vs {_pct(baseline['accuracy'])}{p_text}"
        )
        if best.get("kind") == "cascade":
            share = best.get("deferral_share")
            share_text = "" if share is None else f" {100 * share:.0f}% of"
            reason += f" (a cascade: defers{share_text} the test queries to {baseline['name']})"
    return {
        "promoted": eligible[0]["name"] if eligible else None,
        "reason": reason,
        "eligible": [c["name"] for c in eligible],
        "rejected": rejected,
    }
