"""The training-loss curve every trained candidate saves beside its weights (with the validation accuracy
of each evaluation where there was one)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt


def plot_loss(
    losses: list[tuple[int, float]],
    title: str,
    path: Path,
    validation: list[tuple[int, float]] | None = None,
) -> None:
    fig, ax = plt.subplots(figsize=(5, 3))
    if losses:
        steps, values = zip(*losses, strict=True)
        ax.plot(steps, values, marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if validation:
        right = ax.twinx()
        steps, values = zip(*validation, strict=True)
        right.plot(steps, values, marker="o", color="tab:orange")
        right.set_ylabel("validation accuracy", color="tab:orange")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
