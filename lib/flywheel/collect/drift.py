"""Drift monitor: per time window (weekly by default), is the flywheel's world still the one it learned?

Three measures per window, each tested against all earlier windows pooled (the reference):

- **satisfaction rate** (satisfied among rated interactions): two-proportion z-test
  (`statsmodels.stats.proportion.proportions_ztest`);
- **routing-error rate** (interactions whose expert review says cause=routing, among the window's reviewed
  interactions): the same test, once triage has written reviews. The share is of the reviewed ones, not of
  all: a window the experts have not reviewed yet (the newest, before its cycle) has no routing errors
  because nobody looked, which is not drift;
- **traffic mix** per routed expert: chi-square test of homogeneity (`scipy.stats.chi2_contingency`).

A window is flagged when a test rejects at `collect.drift.alpha`. Windows (or references) smaller than
`min_window_size` are not tested. `cycle_status` turns this and the new feedback since the last cycle
into the answer `flywheel status` prints: should a new cycle run?
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import chi2_contingency
from statsmodels.stats.proportion import proportions_ztest

from flywheel.core.store import Store


def _windows(timestamps: pd.Series, window: str) -> pd.Series:
    return timestamps.dt.tz_convert(None).dt.to_period(window)


def drift_table(
    interactions: pd.DataFrame,
    reviews: pd.DataFrame | None = None,
    window: str = "W-SUN",
    alpha: float = 0.01,
    min_window_size: int = 30,
) -> pd.DataFrame:
    """One row per window: size, rates, traffic shares (`share_<expert>`), p-values and `flagged`. The
    routing-error test needs `min_window_size` reviewed interactions in the window and in the reference.
    `interactions` needs `id`, `timestamp`, `routed_expert`, `satisfied`; `reviews` (optional) needs
    `interaction_id` and `cause`."""
    frame = interactions.assign(window=_windows(interactions["timestamp"], window))
    routing_ids: set[str] = set()
    reviewed_ids: set[str] = set()
    has_reviews = reviews is not None and len(reviews) > 0
    if has_reviews:
        first = reviews.drop_duplicates("interaction_id")  # one attribution per interaction
        reviewed_ids = set(first["interaction_id"])
        routing_ids = set(first.loc[first["cause"] == "routing", "interaction_id"])
    frame["reviewed"] = frame["id"].isin(reviewed_ids)
    frame["routing_error"] = frame["id"].isin(routing_ids)
    rated = frame["satisfied"].notna()
    frame["sat"] = frame["satisfied"].where(rated, False).astype(bool)
    grouped = frame.groupby("window", sort=True)
    table = pd.DataFrame(
        {
            "start": [w.start_time.date() for w in grouped.size().index],
            "interactions": grouped.size(),
            "rated": grouped["satisfied"].count(),
            "satisfied": grouped["sat"].sum(),
            "reviewed": grouped["reviewed"].sum(),
            "routing_errors": grouped["routing_error"].sum(),
        }
    )
    table["satisfaction_rate"] = table["satisfied"] / table["rated"].replace(0, np.nan)
    table["routing_error_rate"] = (
        table["routing_errors"] / table["reviewed"].replace(0, np.nan) if has_reviews else np.nan
    )
    mix = pd.crosstab(frame["window"], frame["routed_expert"])
    for column in ("p_satisfaction", "p_routing", "p_mix"):
        table[column] = np.nan
    for i, w in enumerate(table.index):
        if i == 0 or table.at[w, "interactions"] < min_window_size:
            continue
        ref = table.index[:i]
        if table.loc[ref, "interactions"].sum() < min_window_size:
            continue
        table.at[w, "p_satisfaction"] = _two_proportions(
            table.at[w, "satisfied"],
            table.at[w, "rated"],
            table.loc[ref, "satisfied"].sum(),
            table.loc[ref, "rated"].sum(),
        )
        reviewed_before = table.loc[ref, "reviewed"].sum()
        if has_reviews and min(table.at[w, "reviewed"], reviewed_before) >= min_window_size:
            table.at[w, "p_routing"] = _two_proportions(
                table.at[w, "routing_errors"],
                table.at[w, "reviewed"],
                table.loc[ref, "routing_errors"].sum(),
                reviewed_before,
            )
        counts = np.vstack([mix.loc[w].to_numpy(), mix.loc[ref].sum().to_numpy()])
        counts = counts[:, counts.sum(axis=0) > 0]
        if counts.shape[1] >= 2:
            table.at[w, "p_mix"] = float(chi2_contingency(counts).pvalue)
    moved = {"satisfaction": "p_satisfaction", "routing_errors": "p_routing", "traffic_mix": "p_mix"}
    table["moved"] = [
        [name for name, col in moved.items() if pd.notna(row[col]) and row[col] < alpha]
        for _, row in table.iterrows()
    ]
    table["flagged"] = table["moved"].map(bool)
    shares = mix.div(mix.sum(axis=1), axis=0).add_prefix("share_")
    table = table.join(shares)
    table.index = table.index.astype(str)
    table.index.name = "window"
    return table


def _two_proportions(count: float, n: float, ref_count: float, ref_n: float) -> float:
    if n == 0 or ref_n == 0 or (count + ref_count) in (0, n + ref_n):
        return np.nan  # no variance: nothing to test
    return float(proportions_ztest([count, ref_count], [n, ref_n])[1])


def store_drift(store: Store, drift_config) -> pd.DataFrame:
    """`drift_table` over the whole store, with `collect.drift` settings."""
    interactions = store.interactions_frame(["id", "timestamp", "routed_expert", "satisfied"])
    return drift_table(
        interactions,
        store.reviews_frame(task="triage"),  # the audit asks no cause
        drift_config.window,
        drift_config.alpha,
        drift_config.min_window_size,
    )


def plot_drift(table: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Satisfaction and routing-error rates, and the traffic mix, per window; flagged windows shaded."""
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    labels = [str(s) for s in table["start"]]
    x = np.arange(len(table))
    for ax in (top, middle, bottom):
        for i in np.flatnonzero(table["flagged"].to_numpy()):
            ax.axvspan(i - 0.45, i + 0.45, color="tab:red", alpha=0.12, lw=0)
    top.plot(x, table["satisfaction_rate"], marker="o")
    top.set_ylabel("satisfaction rate")
    top.set_ylim(0, 1)
    top.set_title("Drift per window (shaded: a test flagged the window)")
    middle.plot(x, table["routing_error_rate"], marker="o", color="tab:orange")
    middle.set_ylabel("routing errors / reviewed")
    if table["routing_error_rate"].isna().all():
        middle.text(0.5, 0.5, "no expert reviews yet", transform=middle.transAxes, ha="center", color="grey")
    shares = table.filter(like="share_")
    base = np.zeros(len(table))
    for column in shares.columns:
        values = shares[column].fillna(0).to_numpy()
        bottom.bar(x, values, bottom=base, label=column.removeprefix("share_"))
        base += values
    bottom.set_ylabel("traffic share by routed expert")
    bottom.set_xticks(x, labels, rotation=30, ha="right")
    bottom.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def cycle_status(store: Store, collect_config) -> dict[str, Any]:
    """Should a new cycle run? Yes when enough explicit feedback arrived since the last cycle collected
    (`collect.drift.min_new_feedback`), or a window with data newer than that cycle's is flagged."""
    drift_config = collect_config.drift
    mark = store.last_cycle_mark()
    new_feedback = store.feedback_since(mark["marked_at"] if mark else None)
    table = store_drift(store, drift_config)
    flagged = table[table["flagged"]]
    if mark and mark["data_until"] is not None:
        cutoff = pd.Timestamp(mark["data_until"]).tz_convert(None).to_period(drift_config.window)
        flagged = flagged[[pd.Period(w, drift_config.window) >= cutoff for w in flagged.index]]
    reasons = []
    if new_feedback >= drift_config.min_new_feedback:
        reasons.append(
            f"{new_feedback} interactions with new feedback (threshold {drift_config.min_new_feedback})"
        )
    for window, row in flagged.iterrows():
        reasons.append(f"drift in window {window}: {', '.join(row['moved'])}")
    return {
        "should_run": bool(reasons),
        "reasons": reasons,
        "new_feedback": int(new_feedback),
        "min_new_feedback": drift_config.min_new_feedback,
        "last_cycle": None
        if mark is None
        else {
            "cycle_id": mark["cycle_id"],
            "marked_at": mark["marked_at"].isoformat(),
            "data_until": mark["data_until"].isoformat() if mark["data_until"] else None,
        },
        "flagged_windows": {w: row["moved"] for w, row in flagged.iterrows()},
        "windows": len(table),
    }
