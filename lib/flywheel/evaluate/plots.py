"""Evaluation plots (matplotlib, no pyplot state: safe under Agg and in notebooks).

Each function returns the Figure and, when `path` is given, also saves it there as a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from sklearn.metrics import ConfusionMatrixDisplay

from flywheel.evaluate.report import model_label

BASELINE_COLOR, CANDIDATE_COLOR, PROMOTED_COLOR, FRONTIER_COLOR, CASCADE_COLOR = (
    "tab:gray",
    "tab:blue",
    "tab:red",
    "tab:green",
    "tab:purple",
)


def _style(row: dict) -> tuple[str, str, str]:
    """Color, marker and label suffix: the promoted model a star, the baseline (labelled as the production
    model it is) a square, a cascade (a student deferring to production) a diamond, a single student a
    circle."""
    cascade = row.get("kind") == "cascade"
    if row.get("promoted"):
        return PROMOTED_COLOR, "*", " (promoted cascade)" if cascade else " (promoted)"
    if row.get("is_baseline"):
        return BASELINE_COLOR, "s", ""
    if cascade:
        return CASCADE_COLOR, "D", f" (defers {100 * row.get('deferral_share', 0):.0f}%)"
    return CANDIDATE_COLOR, "o", ""


def pareto_frontier(rows: Sequence[dict], x_key: str = "cost_per_1k") -> list[str]:
    """Names of the rows no other row dominates, cheapest first.

    A row is dominated when another is no more costly (by `x_key`) and at least as accurate, and
    strictly better on one of the two.
    """

    def dominates(a: dict, b: dict) -> bool:
        no_worse = a[x_key] <= b[x_key] and a["accuracy"] >= b["accuracy"]
        return no_worse and (a[x_key] < b[x_key] or a["accuracy"] > b["accuracy"])

    frontier = [r for r in rows if not any(dominates(other, r) for other in rows)]
    return [r["name"] for r in sorted(frontier, key=lambda r: (r[x_key], -r["accuracy"], r["name"]))]


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=120)
    return fig


def _accuracy_scatter(rows: Sequence[dict], x_key: str, x_label: str, title: str) -> Figure:
    """Accuracy (with CI bars) against a positive x on log scale, with the Pareto frontier."""
    if not rows:
        raise ValueError("nothing to plot")
    bad = [r["name"] for r in rows if not r[x_key] > 0]
    if bad:
        raise ValueError(f"{x_key} must be > 0 for a log axis: {bad}")
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.add_subplot()

    frontier = pareto_frontier(rows, x_key)
    by_name = {r["name"]: r for r in rows}
    fx = [by_name[n][x_key] for n in frontier]
    fy = [by_name[n]["accuracy"] for n in frontier]
    ax.step(
        fx, fy, where="post", color=FRONTIER_COLOR, linestyle="--", linewidth=1.2, label="Pareto frontier"
    )

    for r in rows:
        promoted = bool(r.get("promoted"))
        color, marker, suffix = _style(r)
        yerr = _error_bars(r["accuracy"], r["ci_low"], r["ci_high"])
        ax.errorbar(
            r[x_key],
            r["accuracy"],
            yerr=yerr,
            fmt=marker,
            color=color,
            ecolor=color,
            elinewidth=1,
            capsize=3,
            markersize=16 if promoted else 8,
            zorder=3,
        )
        ax.annotate(
            model_label(r) + suffix,
            (r[x_key], r["accuracy"]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8,
            fontweight="bold" if promoted else "normal",
        )

    ax.set_xscale("log")
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.set_xlabel(x_label)
    ax.set_ylabel("routing accuracy (95% CI)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if any(r.get("kind") == "cascade" for r in rows):  # a legend entry for the cascades' marker
        ax.plot([], [], "D", color=CASCADE_COLOR, label="cascade: student + deferral to production")
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_accuracy_vs_cost(rows: Sequence[dict], path: str | Path | None = None) -> Figure:
    """Accuracy against cost per 1k queries (USD, log scale), with CI bars and the Pareto frontier.

    Each row: {"name", "accuracy", "ci_low", "ci_high", "cost_per_1k", "promoted", "is_baseline"}, and
    optionally "kind" ("cascade": drawn as a diamond, with its "deferral_share").
    """
    fig = _accuracy_scatter(rows, "cost_per_1k", "cost per 1k queries (USD, log scale)", "Accuracy vs cost")
    return _save(fig, path)


def plot_accuracy_vs_latency(rows: Sequence[dict], path: str | Path | None = None) -> Figure:
    """Accuracy against median latency (ms, log scale); rows as for cost, with "p50_ms"."""
    fig = _accuracy_scatter(rows, "p50_ms", "median latency per query (ms, log scale)", "Accuracy vs latency")
    return _save(fig, path)


def plot_confusion(
    matrix: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    path: str | Path | None = None,
) -> Figure:
    """Heat map of confusion counts (rows true, columns predicted), each cell labelled, drawn by sklearn's
    `ConfusionMatrixDisplay`. Columns may end with an "(unparsed)" one that has no row."""
    matrix = np.asarray(matrix)
    if matrix.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"matrix shape {matrix.shape} does not match {len(row_labels)}x{len(col_labels)} labels"
        )
    # the display wants a square matrix: rows for the extra columns, all zero, drawn and then cut off
    extra = len(col_labels) - len(row_labels)
    square = np.vstack([matrix, np.zeros((extra, matrix.shape[1]), dtype=matrix.dtype)])
    size = (max(4.0, 1.0 + 0.8 * len(col_labels)), max(3.5, 1.0 + 0.6 * len(row_labels)))
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    display = ConfusionMatrixDisplay(square, display_labels=list(col_labels))
    display.plot(ax=ax, cmap="Blues", values_format="d", im_kw={"vmin": 0}, text_kw={"fontsize": 8})
    for text in display.text_[len(row_labels) :].ravel():
        text.remove()
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels))
    ax.set_ylim(len(row_labels) - 0.5, -0.5)
    ax.set_xticks(range(len(col_labels)), labels=list(col_labels), rotation=45, ha="right")
    ax.set_xlabel("predicted expert")
    ax.set_ylabel("true expert")
    ax.set_title(title)
    return _save(fig, path)


def plot_per_expert(report: pd.DataFrame, title: str, path: str | Path | None = None) -> Figure:
    """Grouped bars of precision, recall and F1 per expert (support shown under each name)."""
    metrics = ["precision", "recall", "f1"]
    x = np.arange(len(report))
    width = 0.8 / len(metrics)
    fig = Figure(figsize=(max(6.0, 1.2 * len(report) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    for k, metric in enumerate(metrics):
        ax.bar(x + (k - 1) * width, report[metric].to_numpy(), width, label=metric)
    names = [str(name) for name in report.index]
    if "support" in report:
        names = [f"{name}\n(n={int(n)})" for name, n in zip(names, report["support"], strict=True)]
    ax.set_xticks(x, labels=names, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.legend(loc="outside upper right", fontsize=8, ncols=3)
    return _save(fig, path)


def plot_ablation(table: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Test accuracy (95% CI bars) of one student per training-label subset (`score_ablation`'s table: index
    subset, columns accuracy, ci_low, ci_high, train_examples)."""
    if table.empty:
        raise ValueError("nothing to plot")
    fig = Figure(figsize=(max(5.0, 1.6 * len(table) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(table))
    acc = table["accuracy"].to_numpy(dtype=float)
    yerr = _error_bars(acc, table["ci_low"].to_numpy(dtype=float), table["ci_high"].to_numpy(dtype=float))
    ax.bar(x, acc, color=CANDIDATE_COLOR, yerr=yerr, capsize=4)
    names = [f"{subset}\n(n={n})" for subset, n in zip(table.index, table["train_examples"], strict=True)]
    ax.set_xticks(x, labels=names, fontsize=8)
    low = max(0.0, float(table["ci_low"].min()) - 0.05)
    ax.set_ylim(low, 1.0)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.set_ylabel("test accuracy (95% CI)")
    ax.set_title("What each label source buys")
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def _error_bars(accuracy, low, high) -> np.ndarray:
    """matplotlib's (2, n) error bars from an interval; at 100% accuracy the Wilson bound is 1 - 1e-16,
    a negative error matplotlib refuses, so rounding noise is clipped to 0."""
    accuracy, low, high = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (accuracy, low, high))
    return np.clip(np.stack([accuracy - low, high - accuracy]), 0.0, None)
