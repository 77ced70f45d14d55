"""The answers an expert can give besides the catalog's experts: triage asks for them, the ground truth
excludes them, the demo's simulated panel gives them; and the experts' majority label."""

from __future__ import annotations

import pandas as pd

OUT_OF_SCOPE = "out_of_scope"  # no expert of the catalog covers the question
AMBIGUOUS = "ambiguous"  # the experts tied, or one could not decide
# why an unsatisfactory interaction went wrong: what the judges and the experts choose from
CAUSES = ("routing", "retrieval", "generation", OUT_OF_SCOPE, "other")


def majority_labels(reviews: pd.DataFrame) -> pd.DataFrame:
    """One label per reviewed interaction: the experts' majority; a tie becomes ambiguous. `agreement` is the
    majority's share of the answers."""
    if reviews.empty:
        return pd.DataFrame(columns=["interaction_id", "label", "reviewers", "agreement"])
    rows = []
    for interaction_id, group in reviews.groupby("interaction_id"):
        counts = group["correct_expert"].value_counts()
        tie = len(counts) > 1 and counts.iloc[0] == counts.iloc[1]
        rows.append(
            {
                "interaction_id": interaction_id,
                "label": AMBIGUOUS if tie else counts.index[0],
                "reviewers": len(group),
                "agreement": float(counts.iloc[0] / len(group)),
            }
        )
    return pd.DataFrame(rows)
