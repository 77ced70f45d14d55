"""The label-source ablation: what each source of training labels buys (expert labels, then the production
router's decisions as teacher labels on satisfied and on unrated interactions). The finetune stage trains one
cheap student per training subset; here each is scored on the same test items."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from flywheel.core.accuracy import accuracy_with_ci
from flywheel.core.routers import load_router

COLUMNS = ["train_examples", "accuracy", "ci_low", "ci_high", "ci95", "n"]


def train_examples(folder: Path) -> int | None:
    """How many examples the student trained on (its training.json), None when it does not say."""
    path = Path(folder) / "training.json"
    return json.loads(path.read_text()).get("train_examples") if path.is_file() else None


def score_ablation(ablation_dirs: dict[str, Path], test: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per training subset (index `subset`, in the order given): its training size and test accuracy
    with the Wilson interval. Empty (with the columns) when there is no ablation."""
    rows = []
    truth = test["label"].tolist()
    for subset, folder in ablation_dirs.items():
        scored = accuracy_with_ci(truth, load_router(folder).predict(test["text"].tolist()), alpha=alpha)
        rows.append(
            {
                "subset": subset,
                "train_examples": train_examples(folder),
                **{k: scored[k] for k in ("accuracy", "ci_low", "ci_high", "n")},
                "ci95": f"[{scored['ci_low']:.3f}, {scored['ci_high']:.3f}]",
            }
        )
    return pd.DataFrame(rows, columns=["subset", *COLUMNS]).set_index("subset")
