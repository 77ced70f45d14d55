"""An ensemble candidate: soft voting over candidates trained before it in the same run.

Nothing new is fitted: the members' probabilities are averaged (equal weights unless the recipe sets
`weights`; fitting weights on ~100 validation items would overfit them). Averaging students that err in
different ways (character n-grams, frozen sentence embeddings, a fine-tuned encoder) is both more accurate
and better at ranking its own confidence than any one of them, which is what a cascade's threshold needs.
The folder holds a copy of each member, so a promoted ensemble travels and serves whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from flywheel.core.config import CandidateConfig
from flywheel.core.routers import ENSEMBLE_MEMBERS, load_router, read_candidate_card, write_candidate_card


def train_ensemble(
    candidate: CandidateConfig,
    experts: list[str],
    out_dir: Path,
    member_dirs: dict[str, Path],
    validation: pd.DataFrame | None = None,
) -> dict:
    """Copy the trained members into `out_dir/members/`, write the card and return the record (validation
    accuracy of the ensemble and of each member alone)."""
    members = list(candidate.members or [])
    missing = [name for name in members if not (Path(member_dirs[name]) / "candidate.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{candidate.name}: members {missing} are not trained in this run; train them first "
            "(list them before the ensemble, and include them when training a subset)"
        )
    cards = {name: read_candidate_card(member_dirs[name]) for name in members}
    unscored = [name for name, card in cards.items() if not card.get("labels")]
    if unscored:
        raise ValueError(f"{candidate.name}: members {unscored} give no probabilities over labels")
    for name in members:
        shutil.copytree(member_dirs[name], out_dir / ENSEMBLE_MEMBERS / name)
    weights = list(candidate.weights or [1.0] * len(members))
    counts = [cards[name].get("parameters") for name in members]
    parameters = sum(counts) if all(count is not None for count in counts) else None
    write_candidate_card(
        out_dir,
        kind="ensemble",
        name=candidate.name,
        members=members,
        weights=weights,
        labels=list(experts),
        parameters=parameters,
    )
    record: dict = {"members": members, "parameters": parameters, "trainable_parameters": 0}
    if validation is not None and len(validation):
        router = load_router(out_dir)
        truth = validation["label"].astype(str).tolist()
        texts = validation["text"].tolist()
        record["validation_accuracy"] = _accuracy(router.predict(texts), truth)
        record["member_validation_accuracy"] = {
            member.name: _accuracy(member.predict(texts), truth) for member in router.members
        }
    record["chosen"] = {"weights": weights}
    return record


def _accuracy(predicted: list, truth: list[str]) -> float:
    return round(sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth), 4)
