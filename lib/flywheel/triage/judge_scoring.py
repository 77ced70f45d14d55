"""How good is each judge? Its routing-error flags scored against the experts' answers.

Reference: the experts' majority answer per reviewed interaction (`ground_truth.majority_labels`; ties are
ambiguous and excluded). A **confirmed routing error** is an interaction whose majority answer is an expert
of the catalog other than the routed one (the answers that change a ground-truth label); out-of-scope and
"routing was right" answers are not. A judge **flags** an interaction when its parsed verdict says
cause=routing; an unparsed verdict flags nothing (its count is reported beside the scores).

- precision = confirmed among flagged, recall = flagged among confirmed, and on the flagged-and-confirmed
  ones the accuracy of the suggested expert; each with a 95% Wilson interval (statsmodels);
- cause agreement: the judge's cause against the experts' majority cause, where the experts agree.

For the demo only, `score_against_hidden_truth` scores the same way against the generator's hidden truth
(the true expert and cause): labelled `reference="hidden_truth"`, never used as labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from flywheel.core.labels import AMBIGUOUS, OUT_OF_SCOPE, majority_labels


def wilson(successes: int, total: int, alpha: float = 0.05) -> dict[str, Any]:
    """A proportion with its Wilson interval; None (not NaN) when there is nothing to count."""
    if total == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "successes": 0, "total": 0}
    low, high = proportion_confint(successes, total, alpha=alpha, method="wilson")
    return {
        "value": successes / total,
        "ci_low": float(low),
        "ci_high": float(high),
        "successes": int(successes),
        "total": int(total),
    }


def majority_causes(reviews: pd.DataFrame) -> pd.Series:
    """The experts' majority cause per interaction; ties are left out."""
    if reviews.empty:
        return pd.Series(dtype=object)
    out = {}
    for interaction_id, group in reviews.groupby("interaction_id"):
        counts = group["cause"].value_counts()
        if len(counts) == 1 or counts.iloc[0] > counts.iloc[1]:
            out[interaction_id] = counts.index[0]
    return pd.Series(out, dtype=object)


def reference_from_reviews(reviews: pd.DataFrame, interactions: pd.DataFrame) -> pd.DataFrame:
    """Per reviewed interaction: routed expert, the experts' majority expert and cause, whether it is a
    confirmed routing error. Ambiguous (tied) answers are dropped."""
    labels = majority_labels(reviews)
    if labels.empty:
        return pd.DataFrame(columns=["interaction_id", "routed_expert", "label", "cause", "routing_error"])
    labels = labels[labels["label"] != AMBIGUOUS]
    routed = interactions.set_index("id")["routed_expert"]
    ref = labels.assign(routed_expert=labels["interaction_id"].map(routed))
    ref = ref[ref["routed_expert"].notna()]
    ref["cause"] = ref["interaction_id"].map(majority_causes(reviews))
    return _with_routing_error(ref)


def reference_from_truth(truth_path: str | Path, interactions: pd.DataFrame) -> pd.DataFrame:
    """The same shape from the demo generator's hidden_truth.jsonl (demo only)."""
    rows = [json.loads(line) for line in Path(truth_path).read_text().splitlines() if line.strip()]
    truth = pd.DataFrame(rows)
    routed = interactions.set_index("id")["routed_expert"]
    ref = pd.DataFrame(
        {
            "interaction_id": truth["id"],
            "label": truth["true_expert"].fillna(OUT_OF_SCOPE),
            "cause": truth["cause"].replace({"none": "other"}),
        }
    )
    ref["routed_expert"] = ref["interaction_id"].map(routed)
    ref = ref[ref["routed_expert"].notna()]
    return _with_routing_error(ref)


def _with_routing_error(ref: pd.DataFrame) -> pd.DataFrame:
    ref = ref.copy()
    ref["routing_error"] = ref["label"].ne(OUT_OF_SCOPE) & ref["label"].ne(ref["routed_expert"])
    return ref[["interaction_id", "routed_expert", "label", "cause", "routing_error"]].reset_index(drop=True)


def score_judge(verdicts: pd.DataFrame, reference: pd.DataFrame, reference_name: str = "experts") -> dict:
    """Scores of one judge's verdicts on the interactions the reference covers."""
    judges = verdicts["judge"].unique().tolist()
    if len(judges) > 1:
        raise ValueError(f"score one judge at a time, got {judges}")
    merged = verdicts.merge(reference, on="interaction_id", how="inner", suffixes=("", "_ref"))
    parsed = merged["parsed"].astype(bool)
    flagged = parsed & merged["cause"].eq("routing")
    confirmed = merged["routing_error"].astype(bool)
    hits = flagged & confirmed
    right_expert = hits & merged["expert"].eq(merged["label"])
    with_cause = parsed & merged["cause_ref"].notna()
    cause_agrees = with_cause & merged["cause"].eq(merged["cause_ref"])
    return {
        "judge": judges[0] if judges else None,
        "reference": reference_name,
        "scored": len(merged),
        "unparsed": int((~parsed).sum()),
        "flagged": int(flagged.sum()),
        "confirmed": int(confirmed.sum()),
        "flagged_and_confirmed": int(hits.sum()),
        "precision": wilson(int(hits.sum()), int(flagged.sum())),
        "recall": wilson(int(hits.sum()), int(confirmed.sum())),
        "suggested_expert_accuracy": wilson(int(right_expert.sum()), int(hits.sum())),
        "cause_agreement": wilson(int(cause_agrees.sum()), int(with_cause.sum())),
    }


def score_judges(verdicts: pd.DataFrame, reference: pd.DataFrame, reference_name: str = "experts") -> list:
    """`score_judge` for each judge in the verdicts."""
    return [
        score_judge(group, reference, reference_name)
        for _, group in verdicts.groupby("judge", sort=True)
        if not group.empty
    ]


def score_against_reviews(verdicts: pd.DataFrame, reviews: pd.DataFrame, interactions: pd.DataFrame) -> list:
    return score_judges(verdicts, reference_from_reviews(reviews, interactions), "experts")


def score_against_hidden_truth(
    verdicts: pd.DataFrame, truth_path: str | Path, interactions: pd.DataFrame
) -> list:
    """Demo only: the generator's hidden truth as the reference (labelled as such)."""
    return score_judges(verdicts, reference_from_truth(truth_path, interactions), "hidden_truth (demo only)")


def _pct(p: dict) -> str:
    if p["value"] is None:
        return "n/a"
    return f"{p['value']:.0%} [{p['ci_low']:.0%}, {p['ci_high']:.0%}]"


def describe(score: dict) -> str:
    """One line in the reference case's shape: flagged N of M, confirmed K, precision, recall."""
    return (
        f"{score['judge']} judge vs {score['reference']}: flagged {score['flagged']} of {score['scored']} "
        f"as routing errors, {score['flagged_and_confirmed']} confirmed "
        f"({score['confirmed']} routing errors in all); precision {_pct(score['precision'])}, "
        f"recall {_pct(score['recall'])}, suggested expert right {_pct(score['suggested_expert_accuracy'])}"
        + (f"; {score['unparsed']} unparsed" if score["unparsed"] else "")
    )


def scores_frame(scores: list[dict]) -> pd.DataFrame:
    """A flat table of scores for display."""
    rows = []
    for s in scores:
        row = {k: s[k] for k in ("judge", "reference", "scored", "unparsed", "flagged", "confirmed")}
        row["flagged_and_confirmed"] = s["flagged_and_confirmed"]
        for metric in ("precision", "recall", "suggested_expert_accuracy", "cause_agreement"):
            row[metric] = _pct(s[metric])
        rows.append(row)
    return pd.DataFrame(rows)


def score_cycle(
    verdicts: pd.DataFrame,
    reviews: pd.DataFrame,
    interactions: pd.DataFrame,
    truth_path: str | Path | None = None,
) -> list[dict]:
    """Each judge against the experts' answers and, for the demo (`truth_path` given), against the hidden
    truth too; print one line per score in the reference case's shape."""
    scores = score_against_reviews(verdicts, reviews, interactions)
    if truth_path is not None and Path(truth_path).is_file():
        scores += score_against_hidden_truth(verdicts, truth_path, interactions)
    for score in scores:
        print(describe(score))
    return scores
