"""What report.html shows a reader: the decision in one sentence, and tables with units instead of raw floats
(accuracy in % with its 95% interval, ms, $ per 1k questions, parameters in millions). Display only: the
scores themselves come from flywheel.evaluate.scoring and the decision from flywheel.evaluate.promote."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

DASH = "—"


def _number(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def percent(value, digits: int = 1) -> str:
    number = _number(value)
    return DASH if number is None else f"{100 * number:.{digits}f}%"


def percent_ci(accuracy, low, high) -> str:
    """`93.0% (90.0–95.6)`."""
    if _number(accuracy) is None:
        return DASH
    if _number(low) is None or _number(high) is None:
        return percent(accuracy)
    return f"{percent(accuracy)} ({100 * low:.1f}–{100 * high:.1f})"


def money(value) -> str:
    """Dollars with three significant digits below $100 (`$0.173`, `$0.000555`), whole dollars above."""
    number = _number(value)
    if number is None:
        return DASH
    if abs(number) >= 100:
        return f"${number:,.0f}"
    if number == 0:
        return "$0"
    if abs(number) >= 1:
        return f"${number:,.2f}"
    return "$" + np.format_float_positional(number, precision=3, unique=False, fractional=False, trim="k")


def milliseconds(value) -> str:
    number = _number(value)
    if number is None:
        return DASH
    return f"{number:,.0f} ms" if number >= 10 else f"{number:.2g} ms"


def millions(value) -> str:
    number = _number(value)
    if number is None or number <= 0:
        return DASH
    return f"{number / 1e6:.1f} M" if number >= 1e6 else f"{number / 1e6:.3f} M"


def p_value(value) -> str:
    number = _number(value)
    if number is None:
        return DASH
    return "< 0.001" if number < 0.001 else f"{number:.3f}"


def points(value) -> str:
    number = _number(value)
    return DASH if number is None else f"{number:+.1f} pts".replace("-", "−")


def fraction_points(value) -> str:
    """An accuracy difference given as a fraction, in points."""
    number = _number(value)
    return DASH if number is None else points(100 * number)


def model_label(row: dict) -> str:
    """The baseline is the production model: named so, with the model it is (never "baseline (baseline)")."""
    if row.get("is_baseline"):
        if row.get("model"):
            return f"production ({row['model']})"
        return "production" if row["name"] == "baseline" else f"{row['name']} (baseline)"
    return str(row["name"])


def readable_table(rows: Sequence[dict], promoted: str | None) -> pd.DataFrame:
    """One line per model (production first): accuracy with its 95% interval, the difference to production
    in points, McNemar's p, agreement with production, the deferred share (cascades), p50 latency, cost per 1k
    questions, parameters in millions, and where the source knows them, accuracy on unseen templates."""
    baseline = next(r for r in rows if r.get("is_baseline"))
    unseen = any(_number(r.get("unseen_template_accuracy")) is not None for r in rows)
    cascades = any(r.get("kind") == "cascade" for r in rows)
    records = []
    for r in rows:
        record = {
            "model": model_label(r),
            "accuracy (95% CI)": percent_ci(r["accuracy"], r.get("ci_low"), r.get("ci_high")),
            "vs production": DASH
            if r.get("is_baseline")
            else points(100 * (r["accuracy"] - baseline["accuracy"])),
            "paired test p": p_value(r.get("mcnemar_p")),
            "agrees with production": DASH if r.get("is_baseline") else percent(r.get("agreement"), 0),
        }
        if cascades:
            record["defers to production"] = percent(r.get("deferral_share"), 0)
        record.update(
            {
                "median latency": milliseconds(r.get("p50_ms")),
                "$ per 1k questions": money(r.get("cost_per_1k")),
                "parameters": millions(r.get("parameters")),
            }
        )
        if unseen:
            record["unseen templates"] = (
                f"{percent(r.get('unseen_template_accuracy'))} (n={r.get('unseen_template_n')})"
                if _number(r.get("unseen_template_accuracy")) is not None
                else DASH
            )
        record["promoted"] = "✔" if r["name"] == promoted else ""
        records.append(record)
    return pd.DataFrame(records).set_index("model")


def readable_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A result table (cascades, the label-source ablation) with units by column name: accuracies and
    shares in %, accuracy drops in points, *_ms in ms, cost in $, thresholds to two decimals; counts and
    names left as they are."""
    shown = pd.DataFrame(index=frame.index)
    if {"accuracy", "ci_low", "ci_high"} <= set(frame.columns):
        shown["accuracy (95% CI)"] = [
            percent_ci(a, lo, hi)
            for a, lo, hi in zip(frame["accuracy"], frame["ci_low"], frame["ci_high"], strict=True)
        ]
    for column in frame.columns:
        if column in ("ci_low", "ci_high", "ci95") or (column == "accuracy" and "accuracy (95% CI)" in shown):
            continue
        values = frame[column]
        if column.endswith("_ms"):
            shown[column.removesuffix("_ms").replace("_", " ")] = values.map(milliseconds)
        elif "cost" in column:
            shown["$ per 1k questions"] = values.map(money)
        elif "drop" in column:  # an accuracy difference
            shown[column.replace("_", " ")] = values.map(fraction_points)
        elif column.endswith(("share", "accuracy")):
            shown[column.replace("_", " ")] = values.map(percent)
        elif column == "threshold":
            shown[column] = values.map(lambda v: DASH if _number(v) is None else f"{v:.2f}")
        else:
            shown[column.replace("_", " ")] = values
    return shown


def monthly_queries(timestamps: pd.Series) -> float | None:
    """Questions per 30 days at the logged rate (the logs' count over their time span); None without one."""
    stamps = pd.to_datetime(timestamps, utc=True, errors="coerce").dropna()
    if len(stamps) < 2:
        return None
    days = (stamps.max() - stamps.min()).total_seconds() / 86400
    return None if days <= 0 else len(stamps) / days * 30


def decision_sentence(
    rows: Sequence[dict],
    decision: dict,
    queries_per_month: float | None,
    max_drop_points: float | None = None,
) -> str:
    """The decision in one sentence (Markdown): what was promoted, why, and what it saves per month at the
    logged traffic; or that production stays, and the closest candidate."""
    baseline = next(r for r in rows if r.get("is_baseline"))
    production = model_label(baseline)
    promoted = decision.get("promoted")
    if promoted is None:
        others = [r for r in rows if not r.get("is_baseline")]
        closest = max(others, key=lambda r: r["accuracy"], default=None)
        near = (
            f"; the closest, {closest['name']}, routes {percent(closest['accuracy'])} "
            f"(production {percent(baseline['accuracy'])})"
            if closest
            else ""
        )
        return f"**Nothing promoted: {production} keeps serving.** No candidate met the promotion rule{near}."
    row = next(r for r in rows if r["name"] == promoted)
    how = "goes into its shadow week" if decision.get("registry_event") == "shadow" else "is promoted"
    kind = (
        f" (a cascade: {row['student']} answers, and defers {percent(row.get('deferral_share'), 0)} of the "
        "questions to production)"
        if row.get("kind") == "cascade"
        else ""
    )
    saving = ""
    per_question = (baseline["cost_per_1k"] - row["cost_per_1k"]) / 1000
    if queries_per_month:
        saving = (
            f", about {money(per_question * queries_per_month)} less per month at the logged traffic "
            f"({queries_per_month:,.0f} questions a month)"
        )
    margin = "" if max_drop_points is None else f" of {max_drop_points:g} points"
    return (
        f"**{promoted} {how}**{kind}: it routes {percent(row['accuracy'])} of the expert-labelled test "
        f"questions correctly against {percent(baseline['accuracy'])} for production, within the allowed "
        f"drop{margin}, at {money(row['cost_per_1k'])} per 1,000 questions instead of "
        f"{money(baseline['cost_per_1k'])}{saving}."
    )
