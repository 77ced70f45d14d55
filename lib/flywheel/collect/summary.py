"""Weekly view of traffic and satisfaction, the first thing to look at after ingestion."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from flywheel.core.pii import PLACEHOLDERS


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


def quarantine_report(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Quarantined records per file and kind of reason (the reason up to its first colon; for schema
    errors, the first field that failed), with the first line of each."""
    if quarantine.empty:
        return pd.DataFrame(columns=["file", "reason", "records", "example_line"])
    kind = quarantine["reason"].str.extract(r"^(schema: [^:;]+|[^:]+)", expand=False)
    grouped = quarantine.assign(file=quarantine["source"].map(lambda s: str(s).rsplit("/", 1)[-1]), kind=kind)
    table = grouped.groupby(["file", "kind"]).agg(records=("line", "size"), example_line=("line", "min"))
    return table.reset_index().rename(columns={"kind": "reason"}).sort_values("records", ascending=False)


def masked_samples(frame: pd.DataFrame, n: int = 8, seed: int = 0) -> pd.DataFrame:
    """Masked questions that had PII in them (they hold a placeholder such as [EMAIL]); never the raw text."""
    pattern = "|".join(p.replace("[", r"\[").replace("]", r"\]") for p in PLACEHOLDERS)
    hits = frame[frame["query_masked"].str.contains(pattern, regex=True)]
    return hits.sample(min(n, len(hits)), random_state=seed)[["id", "query_masked"]] if len(hits) else hits
