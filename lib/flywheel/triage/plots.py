"""Triage figures."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure


def plot_causes(causes: pd.Series, path=None) -> Figure:
    """Bar chart of the experts' answers on why an interaction was unsatisfactory."""
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(causes.index.astype(str)[::-1], causes.values[::-1], color="tab:blue")
    for y, value in enumerate(causes.values[::-1]):
        ax.text(value, y, f" {value}", va="center")
    ax.set_xlabel("unsatisfactory interactions reviewed")
    ax.set_title("Cause of the unsatisfactory rating (expert answers)")
    if path:
        fig.savefig(path, dpi=110)
    return fig
