"""What each model's test decisions say beyond plain accuracy: agreement with the production router, and where
the source knows the hidden truth (the demo), accuracy against it and on the unseen-template slice.

The hidden truth is never a label here: it only scores, and every key says so (`hidden_truth_*`). The
unseen-template slice (test items whose generator template occurs in no training item) tells learning from
memorising: a student that only recalls the training phrasings drops there."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flywheel.core.accuracy import accuracy_with_ci
from flywheel.core.labels import OUT_OF_SCOPE


def agreement(decisions: Sequence[str | None], production: Sequence[str | None]) -> float:
    """Share of items where a model makes the production router's decision."""
    if len(decisions) != len(production) or not decisions:
        raise ValueError(f"{len(decisions)} decisions for {len(production)} production decisions")
    return float(np.mean([d is not None and d == p for d, p in zip(decisions, production, strict=True)]))


def read_hidden_truth(path: str | Path | None) -> pd.DataFrame | None:
    """The demo generator's hidden_truth.jsonl as (id, true_expert, template); None without one. Read
    tolerantly: a world written before templates were recorded has no `template` column."""
    if path is None or not Path(path).is_file():
        return None
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    if "id" not in frame or "true_expert" not in frame:
        return None
    return frame[[c for c in ("id", "true_expert", "template") if c in frame]]


@dataclass
class Slices:
    """Per test item: the hidden truth's expert (None: not covered) and whether its template is unseen in
    training (None: the source records no templates)."""

    hidden_truth: list[str | None] | None = None
    unseen_template: np.ndarray | None = None

    @classmethod
    def build(cls, test: pd.DataFrame, train: pd.DataFrame | None, truth: pd.DataFrame | None) -> Slices:
        if truth is None:
            return cls()
        by_id = truth.set_index("id")
        # a true expert of null means out of scope: no catalog decision is right there
        experts = by_id["true_expert"].where(by_id["true_expert"].notna(), OUT_OF_SCOPE)
        hidden = [experts.get(i) for i in test["id"]]
        unseen = None
        if "template" in by_id and train is not None:
            templates = by_id["template"]
            seen = set(templates.reindex(train["id"]).dropna())
            test_templates = templates.reindex(test["id"])
            unseen = (test_templates.notna() & ~test_templates.isin(seen)).to_numpy()
        return cls(hidden, unseen)

    def subset(self, keep: np.ndarray) -> Slices:
        """The slices of the test items where `keep` (a boolean mask over the test items) is True."""
        keep = np.asarray(keep, dtype=bool)
        hidden = self.hidden_truth
        if hidden is not None:
            hidden = [truth for truth, kept in zip(hidden, keep, strict=True) if kept]
        unseen = None if self.unseen_template is None else self.unseen_template[keep]
        return Slices(hidden, unseen)

    def scores(self, decisions: Sequence[str | None], labels: Sequence[str], alpha: float) -> dict:
        """`hidden_truth_*` (the decisions against the hidden truth on the test items it covers) and
        `unseen_template_*` (against the test labels, on the unseen-template items); no keys where the
        source does not know them."""
        out: dict = {}
        if self.hidden_truth is not None:
            covered = [i for i, t in enumerate(self.hidden_truth) if t is not None]
            out.update(
                _prefixed("hidden_truth", [self.hidden_truth[i] for i in covered], decisions, covered, alpha)
            )
        if self.unseen_template is not None:
            items = np.flatnonzero(self.unseen_template).tolist()
            out.update(_prefixed("unseen_template", [labels[i] for i in items], decisions, items, alpha))
        return out


def _prefixed(prefix: str, truth: list, decisions: Sequence, items: list[int], alpha: float) -> dict:
    if not items:
        return {
            f"{prefix}_accuracy": None,
            f"{prefix}_ci_low": None,
            f"{prefix}_ci_high": None,
            f"{prefix}_n": 0,
        }
    scored = accuracy_with_ci(truth, [decisions[i] for i in items], alpha=alpha)
    return {
        f"{prefix}_accuracy": scored["accuracy"],
        f"{prefix}_ci_low": scored["ci_low"],
        f"{prefix}_ci_high": scored["ci_high"],
        f"{prefix}_n": scored["n"],
    }
