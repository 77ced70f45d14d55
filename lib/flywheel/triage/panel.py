"""Who reviews, and the simulated expert panel of the demo.

The demo has no real subject-matter experts, so a simulated panel answers the review questions from
the demo's hidden truth, with a configurable error rate. Its answers are stored as `origin="simulated"`
and the manifest says so. The hidden truth never becomes a label any other way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from flywheel.store import utcnow

OUT_OF_SCOPE = "out_of_scope"
AMBIGUOUS = "ambiguous"


def review_queue(interactions: pd.DataFrame, reviews: pd.DataFrame) -> pd.DataFrame:
    """Unsatisfactory interactions that no expert has answered yet."""
    unsatisfied = interactions[interactions["satisfied"].eq(False)]
    return unsatisfied[~unsatisfied["id"].isin(reviews["interaction_id"])]


class SimulatedPanel:
    """Experts who answer from the hidden truth, wrong with probability `error_rate`."""

    def __init__(self, truth_path: Path, experts: list[str], error_rate: float, seed: int, size: int = 1):
        if not Path(truth_path).is_file():
            raise FileNotFoundError(
                f"review.mode=simulate needs the demo's hidden truth ({truth_path}); "
                "it exists only for source.kind=demo"
            )
        self.truth = {row["id"]: row for row in map(json.loads, Path(truth_path).read_text().splitlines())}
        self.experts = list(experts)
        self.error_rate = error_rate
        self.rng = np.random.default_rng(seed)
        self.reviewers = [f"simulated-expert-{i + 1}" for i in range(size)]

    def answer(self, interaction_ids: list[str]) -> list[dict]:
        rows = []
        for interaction_id in sorted(interaction_ids):  # sorted: same answers whatever the queue order
            truth = self.truth.get(interaction_id)
            if truth is None:
                continue  # not a demo interaction (e.g. live traffic): real experts must answer it
            for reviewer in self.reviewers:
                expert = truth["true_expert"] or OUT_OF_SCOPE
                if self.rng.random() < self.error_rate:
                    expert = str(self.rng.choice([e for e in self.experts if e != expert]))
                rows.append(
                    {
                        "interaction_id": interaction_id,
                        "reviewer": reviewer,
                        "correct_expert": expert,
                        "cause": truth["cause"] if truth["cause"] != "none" else "other",
                        "origin": "simulated",
                        "reviewed_at": utcnow(),
                    }
                )
        return rows
