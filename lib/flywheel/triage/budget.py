"""The review budget: at most `review.budget` records per cycle go to the experts (audit and triage together),
chosen by policies that each get a share of it (`review.policies`).

The policies, in the order unused share flows on (`REVIEW_POLICIES`):

- `audit`: the blind random sample (`flywheel.core.audit.sample_audit`, unchanged; only its size is
  min(audit.size, its quota));
- `judge_flag`: unsatisfactory interactions ranked by the judges' suggestion: routing errors first, the
  surest first (priority 1 + confidence), then the others, those whose judge is least sure the routing was
  right first (priority 1 - confidence);
- `uncertainty`: interactions whatever their feedback, not reviewed or audited yet, where the router in
  service is least likely to have made the production decision (priority 1 - its probability of that
  decision: high where it disagrees, or is unsure). Without a promoted router that gives probabilities, it
  is skipped and its share goes to `judge_flag`;
- `unsatisfied`: the rest of the unsatisfactory queue, the most recent first (priority: unix seconds).

Each policy takes up to its quota plus what the policies before it left; a policy not listed in
`review.policies` takes nothing, and one listed with share 0 takes only what is left to it. No record is
chosen twice. Everything here is a pure function over frames; the triage stage (`flywheel.triage.stage`)
loads the router, writes the selections to the store and pushes only them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from flywheel.core.config import REVIEW_POLICIES
from flywheel.core.labels import AMBIGUOUS, OUT_OF_SCOPE, majority_labels

AUDIT, JUDGE_FLAG, UNCERTAINTY, UNSATISFIED = REVIEW_POLICIES
POLICY_TASK = {AUDIT: "audit", JUDGE_FLAG: "triage", UNCERTAINTY: "triage", UNSATISFIED: "triage"}
Ranked = Sequence[tuple[str, float | None]]  # (interaction id, priority), best first


def policy_quotas(budget: int, policies: Mapping[str, float]) -> dict[str, int]:
    """`budget` split by the shares in `policies` into whole records that add up to it (largest remainders;
    a tie goes to the policy earlier in REVIEW_POLICIES). Keys: the listed policies, in that order."""
    if budget < 0:
        raise ValueError(f"a review budget is a number of records >= 0, got {budget}")
    if unknown := sorted(set(policies) - set(REVIEW_POLICIES)):
        raise ValueError(f"unknown review policy {unknown}: one of {list(REVIEW_POLICIES)}")
    names = [name for name in REVIEW_POLICIES if name in policies]
    total = sum(policies[name] for name in names)
    if not names or total <= 0:
        raise ValueError(f"review policies need shares that sum to 1, got {dict(policies)}")
    exact = np.array([budget * policies[name] / total for name in names])
    quotas = np.floor(exact + 1e-9).astype(int)
    left = budget - int(quotas.sum())
    order = np.lexsort((np.arange(len(names)), -(exact - quotas)))  # largest remainder, then policy order
    quotas[order[:left]] += 1
    return {name: int(q) for name, q in zip(names, quotas, strict=True)}


def audit_sample_size(audit_size: int, budget: int | None, policies: Mapping[str, float]) -> int:
    """How many items the blind audit sampler draws this cycle: `audit.size`, capped by the audit's quota."""
    if budget is None:
        return audit_size
    return min(audit_size, policy_quotas(budget, policies).get(AUDIT, 0))


@dataclass
class Allocation:
    """What the budget bought: the chosen records, best first within each policy, and how it was split."""

    budget: int
    quotas: dict[str, int]  # from the shares, before any flow
    chosen: dict[str, list[tuple[str, float | None]]]  # policy -> (interaction id, priority)
    reassigned: dict[str, str] = field(default_factory=dict)  # skipped policy -> policy given its quota
    skipped: dict[str, str] = field(default_factory=dict)  # policy -> why it chose nothing

    @property
    def spent(self) -> dict[str, int]:
        return {policy: len(items) for policy, items in self.chosen.items()}

    def ids(self, task: str | None = None) -> list[str]:
        return [
            interaction_id
            for policy, items in self.chosen.items()
            if task is None or POLICY_TASK[policy] == task
            for interaction_id, _ in items
        ]

    def rows(self, cycle_id: str, selected_at: datetime | None = None) -> list[dict[str, Any]]:
        """Store rows for `Store.add_review_selections`."""
        when = selected_at or datetime.now(UTC)
        return [
            {
                "interaction_id": interaction_id,
                "cycle_id": cycle_id,
                "task": POLICY_TASK[policy],
                "policy": policy,
                "score": None if score is None else float(score),
                "selected_at": when,
            }
            for policy, items in self.chosen.items()
            for interaction_id, score in items
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "quotas": self.quotas,
            "spent": self.spent,
            "reassigned": self.reassigned,
            "skipped": self.skipped,
            "chosen": sum(self.spent.values()),
        }


def allocate(
    budget: int,
    policies: Mapping[str, float],
    ranked: Mapping[str, Ranked],
    skipped: Mapping[str, str] | None = None,
    exclude: Iterable[str] = (),
) -> Allocation:
    """Choose at most `budget` records: each listed policy, in REVIEW_POLICIES order, takes the best of its
    `ranked` candidates not chosen yet (nor in `exclude`, except for the audit: its sample is drawn already,
    and all of it counts against the budget), up to its quota plus what earlier policies left.
    A policy in `skipped` (policy -> why) chooses nothing; its quota goes to `judge_flag` when that is
    listed, else flows on like any unused share."""
    quotas = policy_quotas(budget, policies)
    room = dict(quotas)
    skipped = dict(skipped or {})
    reassigned = {}
    for policy in skipped:
        if policy in room and policy != JUDGE_FLAG and JUDGE_FLAG in room:
            room[JUDGE_FLAG] += room[policy]
            room[policy] = 0
            reassigned[policy] = JUDGE_FLAG
    excluded = {str(i) for i in exclude}
    taken: set[str] = set()
    chosen: dict[str, list[tuple[str, float | None]]] = {}
    carry = 0
    for policy in quotas:
        space = room[policy] + carry
        picks: list[tuple[str, float | None]] = []
        if policy not in skipped:
            for interaction_id, score in ranked.get(policy, ()):
                if len(picks) >= space:
                    break
                interaction_id = str(interaction_id)
                # the blind audit sample is drawn already: an item reviewed in an earlier cycle still counts
                if interaction_id in taken or (policy != AUDIT and interaction_id in excluded):
                    continue
                taken.add(interaction_id)
                picks.append((interaction_id, score))
        chosen[policy] = picks
        carry = space - len(picks)
    skipped = {policy: why for policy, why in skipped.items() if policy in quotas}
    return Allocation(budget, quotas, chosen, reassigned, skipped)


# --- each policy's ranking ------------------------------------------------------------------------------
def rank_judge_flags(queue: pd.DataFrame, suggestions: pd.DataFrame | None) -> list[tuple[str, float]]:
    """Queue items with a judge's suggestion (`judges.judge_suggestions`: interaction_id, cause,
    confidence), best first: routing errors by the judge's confidence (priority 1 + confidence), then the
    others by how unsure the judge is that the routing was right (1 - confidence); ties by id."""
    if suggestions is None or suggestions.empty or queue.empty:
        return []
    frame = suggestions[suggestions["interaction_id"].astype(str).isin(set(queue["id"].astype(str)))]
    confidence = frame["confidence"].astype(float).fillna(0.0).clip(0, 1)
    routing = frame["cause"].eq("routing").to_numpy()
    priority = np.where(routing, 1.0 + confidence, 1.0 - confidence)
    ranked = pd.DataFrame({"id": frame["interaction_id"].astype(str), "priority": priority.round(6)})
    ranked = ranked.drop_duplicates("id").sort_values(["priority", "id"], ascending=[False, True])
    return list(zip(ranked["id"], ranked["priority"].astype(float), strict=True))


def uncertainty_scores(
    proba: np.ndarray, labels: Sequence[str], reference: Sequence[str | None]
) -> np.ndarray:
    """Per interaction: 1 - the router's probability of the reference decision (the production model's),
    high where the router disagrees with it or is unsure; 1 where the decision is not one of its labels."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape != (len(reference), len(labels)):
        expected = (len(reference), len(labels))
        raise ValueError(f"proba must be {expected} (interactions, labels), got {proba.shape}")
    column = {label: j for j, label in enumerate(labels)}
    agreeing = np.array(
        [proba[i, column[decision]] if decision in column else 0.0 for i, decision in enumerate(reference)]
    )
    return 1.0 - agreeing


def rank_uncertainty(ids: Sequence[str], scores: np.ndarray) -> list[tuple[str, float]]:
    """Ids by score, highest first; ties by id."""
    ranked = pd.DataFrame({"id": [str(i) for i in ids], "priority": np.round(np.asarray(scores, float), 6)})
    ranked = ranked.drop_duplicates("id").sort_values(["priority", "id"], ascending=[False, True])
    return list(zip(ranked["id"], ranked["priority"].astype(float), strict=True))


def uncertainty_candidates(
    interactions: pd.DataFrame, reviews: pd.DataFrame, audited: Iterable[str], selected: Iterable[str] = ()
) -> pd.DataFrame:
    """Interactions, whatever their feedback, that no expert has answered in any task, not audited and not
    chosen for review before."""
    excluded = {str(i) for i in reviews["interaction_id"]} | {str(i) for i in audited}
    excluded |= {str(i) for i in selected}
    return interactions[~interactions["id"].astype(str).isin(excluded)]


def reference_decisions(candidates: pd.DataFrame, production_shadow: pd.DataFrame | None = None) -> list:
    """The production model's decision per candidate: its shadow decision where it made one (after a
    promotion the logged decision is the promoted router's), else the logged `routed_expert`."""
    logged = candidates["routed_expert"]
    if production_shadow is None or production_shadow.empty:
        return logged.tolist()
    shadow = production_shadow.drop_duplicates("interaction_id").set_index("interaction_id")["decision"]
    from_shadow = candidates["id"].astype(str).map(shadow)
    return from_shadow.where(from_shadow.notna(), logged).tolist()


def rank_unsatisfied(queue: pd.DataFrame) -> list[tuple[str, float]]:
    """The unsatisfactory queue, the most recent first (priority: unix seconds); ties by id."""
    if queue.empty:
        return []
    since_epoch = pd.to_datetime(queue["timestamp"], utc=True) - pd.Timestamp(0, tz="UTC")
    seconds = since_epoch // pd.Timedelta(seconds=1)  # whatever the frame's time unit
    ranked = pd.DataFrame({"id": queue["id"].astype(str).to_numpy(), "priority": seconds.to_numpy()})
    ranked = ranked.drop_duplicates("id").sort_values(["priority", "id"], ascending=[False, True])
    return list(zip(ranked["id"], ranked["priority"].astype(float), strict=True))


# --- what each policy bought ----------------------------------------------------------------------------
def policy_yield(
    selections: pd.DataFrame, reviews: pd.DataFrame, interactions: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """Per policy of `selections` (store rows: interaction_id, task, policy): records `selected`, records
    `answered` (at least one expert answer in the selection's task), `errors` (the experts' majority names a
    catalog expert other than the logged decision: a routing error found) and `error_share` (errors /
    answered; None when nothing was answered). Policies in REVIEW_POLICIES order."""
    if selections.empty:
        return {}
    logged = interactions.assign(id=interactions["id"].astype(str)).set_index("id")["routed_expert"]
    out: dict[str, dict[str, Any]] = {}
    for policy in [p for p in REVIEW_POLICIES if p in set(selections["policy"])]:
        mine = selections[selections["policy"].eq(policy)]
        ids = set(mine["interaction_id"].astype(str))
        task = POLICY_TASK[policy]
        answers = reviews[reviews["interaction_id"].astype(str).isin(ids)]
        if "task" in answers.columns:
            answers = answers[answers["task"].eq(task)]
        labels = majority_labels(answers)
        if labels.empty:
            answered, errors = 0, 0
        else:
            label = labels["label"]
            decided = labels["interaction_id"].astype(str).map(logged)
            catalog = ~label.isin([AMBIGUOUS, OUT_OF_SCOPE]) & label.notna()
            answered, errors = len(labels), int((catalog & label.ne(decided)).sum())
        out[policy] = {
            "selected": len(ids),
            "answered": answered,
            "errors": errors,
            "error_share": round(errors / answered, 4) if answered else None,
        }
    return out
