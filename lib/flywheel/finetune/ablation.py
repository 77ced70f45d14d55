"""What each label source buys: one cheap candidate (config `ablation.candidate`) trained again on the
training examples of fewer label sources. `all` is the candidate itself (trained on everything)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from flywheel.core.config import CandidateConfig, Config
from flywheel.finetune.train import train_candidate

# subset name -> the label sources it keeps (train's `label_source` column)
SUBSETS = {
    "expert": ("expert",),
    "expert+teacher_satisfied": ("expert", "teacher_satisfied"),
}


def ablation_candidate(config: Config) -> CandidateConfig | None:
    if config.ablation is None:
        return None
    by_name = {candidate.name: candidate for candidate in config.candidates}
    if config.ablation.candidate not in by_name:
        raise ValueError(f"ablation.candidate {config.ablation.candidate!r} is not one of {sorted(by_name)}")
    return by_name[config.ablation.candidate]


def train_ablation(
    candidate: CandidateConfig,
    train: pd.DataFrame,
    validation: pd.DataFrame | None,
    experts: dict[str, str],
    out_root: Path,
    seed: int,
    full_folder: Path | None = None,
) -> dict[str, Path]:
    """Train `candidate` on each subset into out_root/<subset> (one trained earlier is kept); returns
    subset -> folder, with `all` -> `full_folder` (trained into out_root/all when not given). A subset
    with no examples, or a single label, is left out."""
    folders: dict[str, Path] = {}
    for subset, sources in SUBSETS.items():
        rows = train[train["label_source"].isin(sources)]
        if rows.empty or rows["label"].nunique() < 2:
            continue
        folders[subset] = _train_or_keep(candidate, rows, validation, experts, Path(out_root) / subset, seed)
    if full_folder is None:
        full_folder = _train_or_keep(candidate, train, validation, experts, Path(out_root) / "all", seed)
    folders["all"] = Path(full_folder)
    return folders


def _train_or_keep(candidate, train, validation, experts, folder: Path, seed: int) -> Path:
    if not (folder / "training.json").is_file():
        train_candidate(candidate, train, experts, folder, seed, validation=validation)
    return folder
