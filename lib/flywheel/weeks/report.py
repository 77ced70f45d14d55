"""The flywheel's trajectory, drawn and reported, from the runner's `trajectory.json`.

`plot_trajectory` draws `trajectory.png`: four panels over the weeks (accuracy with the gate and the
promotion / rollback / rejection events, cost per 1k queries of the router in service, cumulative cost
against keeping the production LLM, expert reviews per week by policy). `write_report` writes
`flywheel.html`, a page a manager reads: one sentence, the figure (embedded, so the page travels alone), the
week-by-week table, the events with their reasons.

Only `weeks[*].week` is required; every other field may be missing or null (a week without a cycle has no
model scores, a week without audited items has no in-service accuracy) and is then drawn as a gap or shown as
a dash. Accuracies are shares in [0, 1]; `gate.max_drop_points` is in accuracy points.
"""

from __future__ import annotations

import base64
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from flywheel.core.files import atomic_path, atomic_write_text, read_json

FIGURE_NAME = "trajectory.png"
REPORT_NAME = "flywheel.html"

PRODUCTION_COLOR, SERVICE_COLOR, STUDENT_COLOR, GATE_COLOR = "tab:gray", "tab:red", "tab:blue", "black"
SAVED_COLOR, OVERSPENT_COLOR = "tab:green", "tab:red"
# marker, color and legend label of each event kind drawn on the accuracy panel
EVENT_STYLE = {
    "promote": ("^", "tab:green", "promotion"),
    "rollback": ("v", "tab:red", "rollback"),
    "reject": ("X", "tab:orange", "shadow candidate rejected"),
    "shadow": ("d", "tab:purple", "candidate enters its shadow week"),
}
# the review policies in the order the budget spends them; any other policy name follows, sorted
POLICY_ORDER = ("audit", "judge_flag", "uncertainty", "unsatisfied")
DASH = "—"
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])(?:/[\w.@+-]+){2,}/?")


# --- reading the trajectory ---------------------------------------------------------------------------------


def _weeks(trajectory: Any) -> list[dict]:
    """The weeks in order, checked: a clear error for what cannot be drawn at all."""
    if not isinstance(trajectory, dict):
        raise ValueError(f"a trajectory is a JSON object, not {type(trajectory).__name__}")
    weeks = trajectory.get("weeks")
    if not isinstance(weeks, list) or not weeks:
        raise ValueError("the trajectory has no weeks: nothing to draw or report")
    numbers = []
    for position, week in enumerate(weeks):
        number = week.get("week") if isinstance(week, dict) else None
        if isinstance(number, bool) or not isinstance(number, int):
            raise ValueError(f"weeks[{position}] has no integer 'week' number: {week!r:.200}")
        numbers.append(number)
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if repeated:
        raise ValueError(f"the trajectory repeats weeks {repeated}")
    return sorted(weeks, key=lambda week: week["week"])


def _section(mapping: Any, key: str) -> dict:
    """A nested object, empty when missing or null."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float:
    """A number, or NaN for null / missing / not a number."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _text(value: Any, default: str = "") -> str:
    return default if value is None else str(value)


def _models(week: dict) -> dict[str, dict]:
    return {str(name): row for name, row in _section(week, "models").items() if isinstance(row, dict)}


def _production(week: dict) -> tuple[str, dict] | None:
    """The production model scored on the week's unbiased test (None without a cycle)."""
    found = sorted((name, row) for name, row in _models(week).items() if row.get("kind") == "production")
    return found[0] if found else None


def _best_student(week: dict) -> tuple[str, dict] | None:
    """The most accurate single or cascade student of the week (ties: the cheaper, then by name)."""
    students = [
        (name, row)
        for name, row in _models(week).items()
        if row.get("kind") in ("single", "cascade") and not math.isnan(_num(row.get("accuracy")))
    ]
    if not students:
        return None

    def rank(item: tuple[str, dict]) -> tuple[float, float, str]:
        cost = _num(item[1].get("cost_per_1k"))
        return (-_num(item[1].get("accuracy")), math.inf if math.isnan(cost) else cost, item[0])

    return min(students, key=rank)


def _events(week: dict) -> list[dict]:
    events = week.get("events")
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []


def _cumulative_costs(weeks: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative cost and cumulative production-only cost per week: the runner's totals where given, else
    the running sum of the weekly costs (a missing week adds nothing)."""
    actual, production = [], []
    running_actual = running_production = 0.0
    for week in weeks:
        cost = _section(week, "cost")
        running_actual += np.nan_to_num(_num(cost.get("usd")))
        running_production += np.nan_to_num(_num(cost.get("production_only_usd")))
        given_actual, given_production = (
            _num(cost.get("cumulative_usd")),
            _num(cost.get("cumulative_production_only_usd")),
        )
        running_actual = running_actual if math.isnan(given_actual) else given_actual
        running_production = running_production if math.isnan(given_production) else given_production
        actual.append(running_actual)
        production.append(running_production)
    return np.array(actual), np.array(production)


def _since_week(weeks: list[dict]) -> int:
    """The first week of the final run of weeks served by the same router."""
    last = weeks[-1].get("router")
    since = weeks[-1]["week"]
    for week in reversed(weeks):
        if week.get("router") != last:
            break
        since = week["week"]
    return since


def _policies(weeks: list[dict]) -> list[str]:
    seen = {str(p) for week in weeks for p in _section(_section(week, "reviews"), "by_policy")}
    return [p for p in POLICY_ORDER if p in seen] + sorted(seen - set(POLICY_ORDER))


# --- the figure ---------------------------------------------------------------------------------------------


def _label(text: Any) -> str:
    """Text drawn as is: matplotlib reads a pair of `$` as mathtext (and can fail on one)."""
    return _text(text).replace("$", r"\$")


def _error_bars(acc: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Asymmetric error bars; a missing bound draws no bar on that side."""
    below = np.nan_to_num(np.clip(acc - low, 0, None))
    above = np.nan_to_num(np.clip(high - acc, 0, None))
    return np.vstack([below, above])


def _accuracy_series(
    ax,
    x: np.ndarray,
    rows: list[dict | None],
    color: str,
    marker: str,
    label: str,
    linestyle: str = "-",
    runs: list[str] | None = None,
) -> np.ndarray:
    """Accuracy with CI bars over the weeks that have one; returns the values. Without `runs` the line joins
    the measured weeks (a cycle's score holds until the next cycle); with `runs` (a key per week) it joins
    only consecutive measured weeks of the same key (the same router in service)."""
    acc = np.array([_num(r.get("accuracy")) if r else math.nan for r in rows])
    low = np.array([_num(r.get("ci_low")) if r else math.nan for r in rows])
    high = np.array([_num(r.get("ci_high")) if r else math.nan for r in rows])
    shown = np.isfinite(acc)
    if shown.any():
        ax.errorbar(
            x[shown],
            acc[shown],
            yerr=_error_bars(acc[shown], low[shown], high[shown]),
            fmt=marker,
            linestyle=linestyle if runs is None else "none",
            color=color,
            ecolor=color,
            elinewidth=1,
            capsize=3,
            markersize=6,
            label=label,
            zorder=3,
        )
        if runs is not None:
            start = 0
            for end in range(1, len(acc) + 1):
                if end == len(acc) or runs[end] != runs[start] or not (shown[end] and shown[end - 1]):
                    ax.plot(x[start:end], acc[start:end], linestyle=linestyle, color=color, zorder=3)
                    start = end
    return np.concatenate([acc, low, high])


def _gate_floor(weeks: list[dict], max_drop_points: float) -> np.ndarray:
    """Production's latest accuracy on the unbiased test minus the margin, carried over cycle-less weeks."""
    floor, current = [], math.nan
    for week in weeks:
        production = _production(week)
        accuracy = _num(production[1].get("accuracy")) if production else math.nan
        current = current if math.isnan(accuracy) else accuracy - max_drop_points / 100
        floor.append(current)
    return np.array(floor)


def _draw_accuracy(ax, trajectory: dict, weeks: list[dict], x: np.ndarray) -> None:
    production = [p[1] if (p := _production(w)) else None for w in weeks]
    service = [_section(w, "in_service") for w in weeks]
    best = [_best_student(w) for w in weeks]
    values = [
        _accuracy_series(ax, x, production, PRODUCTION_COLOR, "s", "production LLM (unbiased test)"),
        _accuracy_series(
            ax,
            x - 0.08,
            service,
            SERVICE_COLOR,
            "o",
            "router in service (week's audited items)",
            runs=[_text(w.get("router")) for w in weeks],
        ),
        _accuracy_series(
            ax,
            x + 0.08,
            [b[1] if b else None for b in best],
            STUDENT_COLOR,
            "D",
            "best student (unbiased test)",
            linestyle="--",
        ),
    ]
    previous = None
    for xi, item in zip(x, best, strict=True):
        if item and item[0] != previous and math.isfinite(_num(item[1].get("accuracy"))):
            ax.annotate(
                _label(item[0]),
                (xi + 0.08, _num(item[1].get("accuracy"))),
                textcoords="offset points",
                xytext=(4, -11),
                fontsize=7,
                color=STUDENT_COLOR,
            )
        previous = item[0] if item else previous

    max_drop = _num(_section(trajectory, "gate").get("max_drop_points"))
    if math.isfinite(max_drop):
        floor = _gate_floor(weeks, max_drop)
        if np.isfinite(floor).any():
            ax.plot(
                x,
                floor,
                drawstyle="steps-mid",
                color=GATE_COLOR,
                linestyle=":",
                linewidth=1.4,
                label=f"gate: production − {max_drop:g} points",
            )
            values.append(floor)

    finite = np.concatenate(values)
    finite = finite[np.isfinite(finite)]
    low = max(0.0, float(finite.min()) - 0.05) if finite.size else 0.0
    high = min(1.0, float(finite.max())) if finite.size else 1.0
    ax.set_ylim(low, high + 0.12 * max(high - low, 0.1))  # headroom for the event markers

    drawn = set()
    for xi, week in zip(x, weeks, strict=True):
        for stack, event in enumerate(e for e in _events(week) if e.get("kind") in EVENT_STYLE):
            marker, color, label = EVENT_STYLE[event["kind"]]
            y = 0.95 - 0.07 * stack  # y in axes fraction: the markers sit above the lines
            ax.scatter(
                [xi],
                [y],
                marker=marker,
                s=70,
                color=color,
                transform=ax.get_xaxis_transform(),
                label=None if event["kind"] in drawn else label,
                zorder=4,
                clip_on=False,
            )
            ax.annotate(
                _label(event.get("model")),
                (xi, y),
                xycoords=ax.get_xaxis_transform(),
                textcoords="offset points",
                xytext=(7, -3),
                fontsize=7,
                color=color,
            )
            drawn.add(event["kind"])
            if event["kind"] in ("promote", "rollback"):
                ax.axvline(xi, color=color, alpha=0.25, linewidth=1)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.set_ylabel("routing accuracy\n(95% CI)")
    ax.set_title("(a) accuracy", loc="left", fontsize=10)


def _usd_ticks(value: float, _position: int) -> str:
    """Dollars with as many decimals as the ticks need to differ ($0.225, $0.23 and $0.235 stay apart)."""
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.3g}"


def _draw_cost_per_1k(ax, weeks: list[dict], x: np.ndarray) -> None:
    service = np.array([_num(_section(w, "cost").get("cost_per_1k")) for w in weeks])
    production = []
    for week in weeks:
        traffic, only = _num(week.get("traffic")), _num(_section(week, "cost").get("production_only_usd"))
        production.append(1000 * only / traffic if traffic > 0 and math.isfinite(only) else math.nan)
    production = np.array(production)
    for values, color, style, label in (
        (production, PRODUCTION_COLOR, "--s", "production LLM for the same traffic"),
        (service, SERVICE_COLOR, "-o", "router in service"),
    ):
        shown = np.isfinite(values)
        if shown.any():
            ax.plot(x[shown], values[shown], style, color=color, label=label, markersize=5)
    both = np.concatenate([service, production])
    positive = both[np.isfinite(both) & (both > 0)]
    if positive.size and positive.size == np.isfinite(both).sum() and positive.max() / positive.min() > 20:
        ax.set_yscale("log")  # a small router costs orders of magnitude less than the LLM
    ax.yaxis.set_major_formatter(FuncFormatter(_usd_ticks))
    ax.set_ylabel("USD per 1k queries")
    ax.set_title("(b) cost per 1k queries of the router in service", loc="left", fontsize=10)


def _draw_cumulative(ax, weeks: list[dict], x: np.ndarray) -> None:
    actual, production = _cumulative_costs(weeks)
    ax.plot(x, production, "--s", color=PRODUCTION_COLOR, markersize=4, label="keeping the production LLM")
    ax.plot(x, actual, "-o", color=SERVICE_COLOR, markersize=4, label="the flywheel (as served)")
    ax.fill_between(
        x,
        actual,
        production,
        where=production >= actual,
        interpolate=True,
        color=SAVED_COLOR,
        alpha=0.25,
        label="saved",
    )
    if (actual > production).any():
        ax.fill_between(
            x,
            actual,
            production,
            where=actual > production,
            interpolate=True,
            color=OVERSPENT_COLOR,
            alpha=0.2,
            label="spent above production",
        )
    saved = production[-1] - actual[-1]
    if production[-1] > 0:
        ax.annotate(
            _label(
                f"{'saved' if saved >= 0 else 'overspent'} ${abs(saved):,.2f} "
                f"({100 * abs(saved) / production[-1]:.0f}%)"
            ),
            (x[-1], (actual[-1] + production[-1]) / 2),
            textcoords="offset points",
            xytext=(-8, 0),
            ha="right",
            va="center",
            fontsize=8,
        )
    ax.yaxis.set_major_formatter(FuncFormatter(_usd_ticks))
    ax.set_ylim(bottom=0)
    ax.set_ylabel("cumulative USD")
    ax.set_title("(c) cumulative cost against keeping the production LLM", loc="left", fontsize=10)


def _draw_reviews(ax, weeks: list[dict], x: np.ndarray) -> None:
    policies = _policies(weeks)
    by_policy = np.array(
        [[_num(_section(_section(w, "reviews"), "by_policy").get(p)) for p in policies] for w in weeks]
    ).reshape(len(weeks), len(policies))
    by_policy = np.nan_to_num(by_policy)
    totals = np.array([_num(_section(w, "reviews").get("total")) for w in weeks])
    # reviews the runner counted but attributed to no policy still show, as their own part of the bar
    unattributed = np.clip(np.nan_to_num(totals) - by_policy.sum(axis=1), 0, None)
    colors = [f"C{k}" for k in range(len(policies))]
    bottom = np.zeros(len(weeks))
    for k, policy in enumerate(policies):
        ax.bar(x, by_policy[:, k], bottom=bottom, width=0.7, color=colors[k], label=_label(policy))
        bottom += by_policy[:, k]
    if unattributed.any():
        ax.bar(x, unattributed, bottom=bottom, width=0.7, color="lightgray", label="no policy recorded")
        bottom += unattributed
    for xi, height in zip(x, bottom, strict=True):
        if height > 0:
            ax.annotate(
                f"{height:.0f}",
                (xi, height),
                textcoords="offset points",
                xytext=(0, 2),
                ha="center",
                fontsize=7,
            )
    budget = np.array([_num(_section(w, "reviews").get("budget")) for w in weeks])
    if np.isfinite(budget).any():
        ax.plot(
            x,
            budget,
            drawstyle="steps-mid",
            color="black",
            linestyle="--",
            linewidth=1.2,
            label="budget per cycle",
        )
    if not bottom.any() and not np.isfinite(budget).any():
        ax.text(0.5, 0.5, "no expert reviews", transform=ax.transAxes, ha="center", va="center", color="gray")
    top = max(float(bottom.max()), float(np.nanmax(budget)) if np.isfinite(budget).any() else 0.0, 1.0)
    ax.set_ylim(0, top * 1.15)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("expert reviews")
    ax.set_title("(d) expert reviews spent per week, by policy", loc="left", fontsize=10)


def trajectory_figure(trajectory: dict) -> Figure:
    """The four panels sharing the week axis, as a Figure; no pyplot state, so safe in notebooks."""
    weeks = _weeks(trajectory)
    x = np.array([w["week"] for w in weeks], dtype=float)
    fig = Figure(figsize=(11, 13), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True, height_ratios=[1.6, 1, 1, 1])
    _draw_accuracy(axes[0], trajectory, weeks, x)
    _draw_cost_per_1k(axes[1], weeks, x)
    _draw_cumulative(axes[2], weeks, x)
    _draw_reviews(axes[3], weeks, x)

    launch = trajectory.get("launch_week")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if isinstance(launch, int) and not isinstance(launch, bool):
            ax.axvline(launch, color="gray", linestyle="-.", linewidth=1, alpha=0.6)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if isinstance(launch, int) and not isinstance(launch, bool):
        axes[0].annotate(
            "launch",
            (launch, 0.02),
            xycoords=axes[0].get_xaxis_transform(),
            xytext=(3, 0),
            textcoords="offset points",
            fontsize=7,
            color="gray",
        )
    bottom = axes[-1]
    if len(weeks) <= 26:
        starts = [_text(w.get("start")) for w in weeks]
        labels = [f"{w['week']}\n{s}" if s else str(w["week"]) for w, s in zip(weeks, starts, strict=True)]
        bottom.set_xticks(x, labels=[_label(label) for label in labels], fontsize=8)
    else:
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlabel("week (start date)")
    bottom.set_xlim(x.min() - 0.6, x.max() + 0.6)

    title = f"Flywheel {_text(trajectory.get('flywheel_id'), '(no id)')}: {len(weeks)} weeks"
    if trajectory.get("seed") is not None:
        title += f", seed {trajectory['seed']}"
    fig.suptitle(_label(title), fontsize=13)
    return fig


def plot_trajectory(trajectory: dict, path: str | Path) -> Path:
    """Draw the trajectory into the PNG at `path` (written atomically); returns the path."""
    fig = trajectory_figure(trajectory)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


# --- the page -----------------------------------------------------------------------------------------------


def _public(text: Any) -> str:
    """Text for the page with machine paths cut to their last part (a run folder, an artifact's name)."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], _text(text))


def _pct(value: Any) -> str:
    value = _num(value)
    return DASH if math.isnan(value) else f"{100 * value:.1f}%"


def _with_ci(row: dict | None) -> str:
    """`91.2% (88.0–94.1%)`, the CI left out when unknown."""
    if not row or math.isnan(_num(row.get("accuracy"))):
        return DASH
    low, high = _num(row.get("ci_low")), _num(row.get("ci_high"))
    if math.isnan(low) or math.isnan(high):
        return _pct(row["accuracy"])
    return f"{_pct(row['accuracy'])} ({100 * low:.1f}–{100 * high:.1f}%)"


def _significant(value: Any, digits: int = 4) -> str:
    """`digits` significant digits, never in exponent notation (0.6000, 0.00001234, 12,350)."""
    value = _num(value)
    if math.isnan(value):
        return DASH
    if value == 0:
        return "0"
    return format(Decimal(f"{value:#.{digits}g}"), ",f")


def _plain(value: Any) -> str:
    value = _num(value)
    return DASH if math.isnan(value) else f"{value:g}"


def _usd(value: Any) -> str:
    value = _num(value)
    if math.isnan(value):
        return DASH
    sign = "-" if value < 0 else ""
    return (
        f"{sign}${abs(value):,.2f}"
        if abs(value) >= 0.01 or value == 0
        else f"{sign}${_significant(abs(value))}"
    )


def _count(value: Any) -> str:
    value = _num(value)
    return DASH if math.isnan(value) else f"{value:,.0f}"


def _score(weeks: list[dict], name: str | None) -> tuple[dict | None, int | None]:
    """The latest score of model `name` (None: production) on the unbiased test, with its week."""
    for week in reversed(weeks):
        if name is None:
            found = _production(week)
            row = found[1] if found else None
        else:
            row = _models(week).get(name)
        if row and math.isfinite(_num(row.get("accuracy"))):
            return row, week["week"]
    return None, None


def _summary_sentence(trajectory: dict, weeks: list[dict]) -> str:
    last = weeks[-1]
    router, kind = _text(last.get("router"), "an unnamed router"), _text(last.get("router_kind"))
    since = _since_week(weeks)
    actual, production = _cumulative_costs(weeks)
    total, baseline = float(actual[-1]), float(production[-1])
    saved = baseline - total

    if kind == "production":
        serving = (
            f"After {len(weeks)} weeks the production LLM ({_public(router)}) still serves, "
            f"since week {since}"
        )
    else:
        noun = {"single": "the small router", "cascade": "the cascade router"}.get(kind, "the router")
        serving = f"After {len(weeks)} weeks {noun} {_public(router)} serves, in service since week {since}"

    if baseline > 0:
        share = 100 * abs(saved) / baseline
        verb = "saving" if saved >= 0 else "spending"
        more = "" if saved >= 0 else " more"
        cost = (
            f"the flywheel cost {_usd(total)} against {_usd(baseline)} for keeping the production LLM, "
            f"{verb} {share:.1f}% ({_usd(abs(saved))}){more}"
        )
    else:
        cost = f"the flywheel cost {_usd(total)} (no production-only cost recorded to compare with)"

    production_score, production_week = _score(weeks, None)
    if kind == "production":
        accuracy = (
            f"on the unbiased test the production LLM routes {_with_ci(production_score)} correctly "
            f"(week {production_week})"
            if production_score
            else "its accuracy on the unbiased test is not measured yet"
        )
    else:
        score, week = _score(weeks, _text(last.get("router")))
        if score:
            accuracy = f"on the unbiased test it routes {_with_ci(score)} correctly (week {week})"
        elif math.isfinite(_num(_section(last, "in_service").get("accuracy"))):
            audited = _section(last, "in_service")
            accuracy = (
                f"on week {last['week']}'s {_count(audited.get('reviewed'))} audited items "
                f"it routes {_with_ci(audited)} correctly"
            )
        else:
            accuracy = "its accuracy is not measured yet"
        if production_score:
            accuracy += (
                f", against {_with_ci(production_score)} for the production LLM (week {production_week})"
            )
    return f"{serving}; {cost}; {accuracy}."


def _week_row(week: dict) -> dict[str, Any]:
    reviews = _section(week, "reviews")
    by_policy = _section(reviews, "by_policy")
    budget = reviews.get("budget")
    best = _best_student(week)
    production = _production(week)
    service = _section(week, "in_service")
    trigger = _section(week, "trigger")
    reasons = trigger.get("reasons") if isinstance(trigger.get("reasons"), list) else []
    cost = _section(week, "cost")
    reviewed = _num(service.get("reviewed"))
    return {
        "week": week["week"],
        "start": _public(week.get("start")),
        "router": _public(week.get("router")) or DASH,
        "router_kind": _public(week.get("router_kind")),
        "traffic": _count(week.get("traffic")),
        "feedback": _count(week.get("feedback")),
        "satisfied": _pct(week.get("satisfied_share")),
        "in_service": _with_ci(service),
        "in_service_n": "" if math.isnan(reviewed) else f"n={reviewed:,.0f}",
        "production": _with_ci(production[1] if production else None),
        "best_name": _public(best[0]) if best else "",
        "best": _with_ci(best[1] if best else None),
        "cost_per_1k": DASH
        if math.isnan(_num(cost.get("cost_per_1k")))
        else f"${_significant(cost.get('cost_per_1k'))}",
        "cumulative": _usd(cost.get("cumulative_usd")),
        "cumulative_production": _usd(cost.get("cumulative_production_only_usd")),
        "reviews": _count(reviews.get("total")) + ("" if budget is None else f" / {_count(budget)}"),
        "by_policy": ", ".join(
            f"{_public(p)} {_count(by_policy[p])}" for p in _policies([week]) if p in by_policy
        ),
        "cycle": _public(week.get("cycle_id")) or DASH,
        "trigger": "; ".join(_public(r) for r in reasons),
        "events": [f"{_public(e.get('kind'))} {_public(e.get('model'))}".strip() for e in _events(week)],
    }


def _facts(trajectory: dict, weeks: list[dict]) -> list[tuple[str, str]]:
    summary = _section(trajectory, "summary")
    first = summary.get("first_promotion_week")
    ratio = _num(summary.get("cost_ratio"))
    seconds = _num(summary.get("seconds"))
    gate = _section(trajectory, "gate")
    facts = [
        ("first promotion", f"week {first}" if first is not None else "none"),
        (
            "cumulative cost against keeping the production LLM",
            DASH if math.isnan(ratio) else f"{100 * ratio:.1f}%",
        ),
        ("most expert reviews in one cycle", _count(summary.get("reviews_per_cycle_max"))),
        ("longest run of weeks below the gate", _count(summary.get("weeks_below_gate_in_a_row_max"))),
        (
            "gate",
            f"within {_plain(gate.get('max_drop_points'))} points of production; shadow agreement ≥ "
            f"{_pct(gate.get('min_agreement'))}",
        ),
        (
            "weeks",
            f"{len(weeks)} of {_text(trajectory.get('weeks_total'), DASH)}, "
            f"launch in week {_text(trajectory.get('launch_week'), DASH)}",
        ),
        (
            "config, seed",
            f"{Path(_text(trajectory.get('config'), DASH)).name}, seed {_text(trajectory.get('seed'), DASH)}",
        ),
        ("simulation time", DASH if math.isnan(seconds) else f"{seconds:,.0f} s"),
    ]
    return [(name, _public(value)) for name, value in facts]


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Flywheel {{ flywheel_id }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222;
       line-height: 1.45; }
p.summary { font-size: 1.2em; border-left: 4px solid #2a7; padding: .4em 1em; background: #f4faf6; }
table { border-collapse: collapse; font-size: .85em; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.num { text-align: right; white-space: nowrap; }
small, .muted { color: #666; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .2em 1.5em; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; }
img { max-width: 100%; }
</style>
</head>
<body>
<h1>Flywheel {{ flywheel_id }}</h1>
<p class="summary" id="summary">{{ sentence }}</p>
<dl class="facts">
{% for name, value in facts %}<dt>{{ name }}</dt><dd>{{ value }}</dd>
{% endfor %}</dl>
<h2>Trajectory</h2>
<img src="data:image/png;base64,{{ figure }}"
     alt="accuracy, cost per 1k queries, cumulative cost and expert reviews over the weeks">
<h2>Week by week</h2>
<p class="muted">Accuracy with its 95% confidence interval. The router in service is scored on the week's
audited items (the experts' blind random sample); production and the best student on the latest cycle's
unbiased test.</p>
<table id="weeks">
<thead><tr><th>Week</th><th>Router in service</th><th>Traffic</th><th>Feedback</th><th>Satisfied</th>
<th>Accuracy in service</th><th>Production</th><th>Best student</th><th>$ per 1k</th>
<th>Cumulative cost (production only)</th><th>Reviews (budget)</th><th>Cycle</th><th>Events</th></tr></thead>
<tbody>
{% for row in rows %}<tr>
<td class="num">{{ row.week }}<br><small>{{ row.start }}</small></td>
<td>{{ row.router }}<br><small>{{ row.router_kind }}</small></td>
<td class="num">{{ row.traffic }}</td>
<td class="num">{{ row.feedback }}</td>
<td class="num">{{ row.satisfied }}</td>
<td class="num">{{ row.in_service }}<br><small>{{ row.in_service_n }}</small></td>
<td class="num">{{ row.production }}</td>
<td>{{ row.best }}<br><small>{{ row.best_name }}</small></td>
<td class="num">{{ row.cost_per_1k }}</td>
<td class="num">{{ row.cumulative }}<br><small>({{ row.cumulative_production }})</small></td>
<td class="num">{{ row.reviews }}<br><small>{{ row.by_policy }}</small></td>
<td>{{ row.cycle }}<br><small>{{ row.trigger }}</small></td>
<td>{{ row.events | join(", ") }}</td>
</tr>
{% endfor %}</tbody>
</table>
<h2>Events</h2>
{% if events %}<ul id="events">
{% for e in events %}<li>Week {{ e.week }}: <strong>{{ e.kind }}</strong> {{ e.model }}
{%- if e.reason %}: {{ e.reason }}{% endif %}</li>
{% endfor %}</ul>{% else %}<p id="events">No promotion, shadow, rejection or rollback.</p>{% endif %}
</body>
</html>
"""
_ENVIRONMENT = jinja2.Environment(
    autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)


def render_report(trajectory: dict, figure_png: bytes) -> str:
    """The page's HTML, with `figure_png` embedded; every value is escaped."""
    weeks = _weeks(trajectory)
    events = [
        {
            "week": week["week"],
            "kind": _public(event.get("kind")),
            "model": _public(event.get("model")),
            "reason": _public(event.get("reason")),
        }
        for week in weeks
        for event in _events(week)
    ]
    return _ENVIRONMENT.from_string(_TEMPLATE).render(
        flywheel_id=_public(trajectory.get("flywheel_id")) or "(no id)",
        sentence=_summary_sentence(trajectory, weeks),
        facts=_facts(trajectory, weeks),
        figure=base64.b64encode(figure_png).decode("ascii"),
        rows=[_week_row(week) for week in weeks],
        events=events,
    )


def write_report(trajectory: dict, folder: str | Path) -> Path:
    """Draw `trajectory.png` into `folder` and write `flywheel.html` there (the figure embedded, so the page
    can be sent on its own); both atomically. Returns the page's path."""
    folder = Path(folder)
    figure = plot_trajectory(trajectory, folder / FIGURE_NAME)
    page = folder / REPORT_NAME
    atomic_write_text(page, render_report(trajectory, figure.read_bytes()))
    return page


def report_run(folder: str | Path) -> Path:
    """`write_report` for a run folder from its `trajectory.json`."""
    path = Path(folder) / "trajectory.json"
    if not path.is_file():
        raise FileNotFoundError(f"no trajectory.json in {folder}: run `flywheel run` first")
    return write_report(read_json(path), folder)
