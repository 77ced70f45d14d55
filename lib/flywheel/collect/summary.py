"""Weekly view of traffic and satisfaction, the first thing to look at after ingestion."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure


def weekly_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per ISO week: interactions, satisfied share, and the traffic share of each expert."""
    week = frame["timestamp"].dt.tz_convert(None).dt.to_period("W-SUN").dt.start_time.dt.date
    grouped = frame.assign(week=week).groupby("week")
    table = pd.DataFrame({"interactions": grouped.size(), "satisfied_share": grouped["satisfied"].mean()})
    mix = pd.crosstab(week, frame["routed_expert"], normalize="index")
    mix.index.name = "week"
    return table.join(mix.add_prefix("share_")).round(3)


def plot_weekly(summary: pd.DataFrame, path=None) -> Figure:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    weeks = [str(w) for w in summary.index]
    top.plot(weeks, summary["satisfied_share"], marker="o")
    top.set_ylabel("satisfied share")
    top.set_ylim(0, 1)
    top.set_title("User satisfaction and routed traffic per week")
    shares = summary.filter(like="share_").drop(columns="satisfied_share", errors="ignore")
    bottom_acc = None
    for column in shares.columns:
        bottom.bar(weeks, shares[column], bottom=bottom_acc, label=column.removeprefix("share_"))
        bottom_acc = shares[column] if bottom_acc is None else bottom_acc + shares[column]
    bottom.set_ylabel("traffic share by routed expert")
    bottom.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig
