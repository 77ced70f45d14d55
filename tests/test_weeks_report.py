"""The flywheel's trajectory figure and HTML report, from a hand-built six-week trajectory: a launch, a shadow
week, a promotion, a rollback, weeks without a cycle, null accuracies."""

import html
import json
import re
from datetime import date, timedelta

import matplotlib.image
import numpy as np
import pytest

from flywheel.weeks.report import (
    FIGURE_NAME,
    REPORT_NAME,
    _significant,
    plot_trajectory,
    report_run,
    trajectory_figure,
    write_report,
)

PRODUCTION = "gpt-prod"


def score(kind, accuracy, low, high, cost, deferral=None, n=200):
    return {
        "kind": kind,
        "accuracy": accuracy,
        "ci_low": low,
        "ci_high": high,
        "n": n,
        "cost_per_1k": cost,
        "deferral_share": deferral,
    }


def week(number, router, kind, cost_per_1k, usd, cumulative, cumulative_production, **fields):
    base = {
        "week": number,
        "start": (date(2026, 1, 5) + timedelta(weeks=number - 1)).isoformat(),
        "router": router,
        "router_kind": kind,
        "traffic": 500,
        "feedback": 120,
        "satisfied_share": 0.8,
        "answered_by": {router: 500},
        "production_calls": 500 if kind == "production" else 60,
        "reviews": {"total": 0, "budget": 60, "by_policy": {}},
        "cycle_id": None,
        "trigger": {"should_run": False, "reasons": []},
        "models": {},
        "in_service": {"name": router, "reviewed": 0, "accuracy": None, "ci_low": None, "ci_high": None},
        "cost": {
            "usd": usd,
            "production_only_usd": 1.0,
            "cumulative_usd": cumulative,
            "cumulative_production_only_usd": cumulative_production,
            "saved_usd": cumulative_production - cumulative,
            "cost_per_1k": cost_per_1k,
        },
        "events": [],
    }
    base.update(fields)
    return base


def six_weeks():
    return {
        "flywheel_id": "fw-test-1",
        "config": "/work/main/configs/flywheel.yaml",
        "seed": 7,
        "weeks_total": 6,
        "launch_week": 2,
        "gate": {"max_drop_points": 2.0, "min_agreement": 0.9},
        "weeks": [
            week(1, PRODUCTION, "production", 2.0, 1.0, 1.0, 1.0),
            week(
                2,
                PRODUCTION,
                "production",
                2.0,
                1.0,
                2.0,
                2.0,
                cycle_id="cycle-2",
                trigger={"should_run": True, "reasons": ["launch week", "new feedback"]},
                reviews={
                    "total": 60,
                    "budget": 60,
                    "by_policy": {"audit": 30, "judge_flag": 18, "uncertainty": 12},
                },
                models={
                    PRODUCTION: score("production", 0.92, 0.89, 0.95, 2.0),
                    "minilm": score("single", 0.85, 0.81, 0.89, 0.01),
                    "casc": score("cascade", 0.91, 0.88, 0.94, 0.35, deferral=0.15),
                },
                in_service={
                    "name": PRODUCTION,
                    "reviewed": 40,
                    "accuracy": 0.925,
                    "ci_low": 0.8,
                    "ci_high": 0.97,
                },
                events=[{"kind": "shadow", "model": "casc", "reason": "passes the offline promotion rule"}],
            ),
            week(
                3,
                PRODUCTION,
                "production",
                2.0,
                1.0,
                3.0,
                3.0,
                cycle_id="cycle-3",
                trigger={"should_run": True, "reasons": ["new feedback"]},
                reviews={"total": 55, "budget": 60, "by_policy": {"audit": 30, "judge_flag": 25}},
                models={
                    PRODUCTION: score("production", 0.92, 0.89, 0.95, 2.0),
                    "casc": score("cascade", 0.91, 0.88, 0.94, 0.35, deferral=0.15),
                },
                events=[{"kind": "promote", "model": "casc", "reason": "shadow week held: agreement 96.0%"}],
            ),
            week(
                4,
                "casc",
                "cascade",
                0.812345,
                0.4,
                3.4,
                4.0,
                cycle_id="cycle-4",
                trigger={"should_run": True, "reasons": ["drift"]},
                reviews={"total": 60, "budget": 60, "by_policy": {"audit": 30, "uncertainty": 30}},
                models={
                    PRODUCTION: score("production", 0.92, 0.89, 0.95, 2.0),
                    "casc": score("cascade", 0.905, 0.87, 0.93, 0.35, deferral=0.15),
                    "casc-v2": score("cascade", 0.915, 0.885, 0.94, 0.3, deferral=0.12),
                },
                in_service={"name": "casc", "reviewed": 40, "accuracy": 0.8, "ci_low": 0.65, "ci_high": 0.89},
                events=[
                    {
                        "kind": "rollback",
                        "model": "casc",
                        "reason": "accuracy 80.0% [65.0, 89.0] on 40 audited items is below the gate's 90.0% "
                        "(registry /work/main/runs/flywheel-fw-test-1/registry.json)",
                    },
                    {"kind": "shadow", "model": "casc-v2", "reason": "passes the offline promotion rule"},
                ],
            ),
            week(
                5,
                PRODUCTION,
                "production",
                2.0,
                1.0,
                4.4,
                5.0,
                events=[
                    {"kind": "promote", "model": "casc-v2", "reason": "shadow week held: agreement 95.0%"}
                ],
            ),
            week(
                6,
                "casc-v2",
                "cascade",
                0.6,
                0.3,
                4.7,
                6.0,
                cycle_id="cycle-6",
                trigger={"should_run": True, "reasons": ["new feedback"]},
                reviews={"total": 48, "budget": 60, "by_policy": {"audit": 30, "judge_flag": 18}},
                models={
                    PRODUCTION: score("production", 0.93, 0.90, 0.95, 2.0),
                    "casc-v2": score("cascade", 0.915, 0.885, 0.94, 0.3, deferral=0.12),
                    "minilm-v2": score("single", 0.88, 0.84, 0.91, 0.01),
                },
                in_service={
                    "name": "casc-v2",
                    "reviewed": 40,
                    "accuracy": 0.9,
                    "ci_low": 0.77,
                    "ci_high": 0.96,
                },
                events=[
                    {
                        "kind": "reject",
                        "model": "minilm-v2",
                        "reason": "agrees with the router in service on 80.0% (< 90%)",
                    }
                ],
            ),
        ],
        "summary": {
            "first_promotion_week": 3,
            "cost_ratio": 4.7 / 6.0,
            "reviews_per_cycle_max": 60,
            "weeks_below_gate_in_a_row_max": 1,
            "seconds": 93.4,
        },
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One run folder reported once: the tests below only read it."""
    folder = tmp_path_factory.mktemp("flywheel-fw-test-1")
    return folder, write_report(six_weeks(), folder).read_text()


def summary_text(page: str) -> str:
    found = re.search(r'<p class="summary" id="summary">(.*?)</p>', page, re.S)
    assert found, "no summary paragraph"
    return html.unescape(found.group(1))


def table_rows(page: str) -> list[str]:
    body = re.search(r'<table id="weeks">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert body, "no weeks table"
    return re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)


def visible(page: str) -> str:
    """The page without the embedded figure's base64 (which holds slashes by chance)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,", page)


def labels(ax) -> list[str]:
    return ax.get_legend_handles_labels()[1]


def test_the_figure_has_four_panels_sharing_the_week_axis_with_the_gate_events_and_reviews():
    fig = trajectory_figure(six_weeks())
    accuracy, cost, cumulative, reviews = fig.axes[:4]
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == 4
    assert all(accuracy.get_shared_x_axes().joined(accuracy, other) for other in (cost, cumulative, reviews))
    assert "fw-test-1" in fig.get_suptitle()

    assert {
        "production LLM (unbiased test)",
        "router in service (week's audited items)",
        "best student (unbiased test)",
        "gate: production − 2 points",
        "promotion",
        "rollback",
        "shadow candidate rejected",
    } <= set(labels(accuracy))
    gate = next(line for line in accuracy.get_lines() if line.get_label().startswith("gate"))
    # production's latest accuracy minus 2 points, carried over the weeks without a cycle
    np.testing.assert_allclose(gate.get_ydata(), [np.nan, 0.90, 0.90, 0.90, 0.90, 0.91])

    assert "saved" in labels(cumulative)
    assert {"audit", "judge_flag", "uncertainty", "budget per cycle"} <= set(labels(reviews))
    stacked = np.zeros(6)
    for bars in reviews.containers:
        stacked += [patch.get_height() for patch in bars]
    np.testing.assert_allclose(stacked, [0, 60, 55, 60, 0, 48])


def test_the_png_is_written_and_holds_a_real_figure(tmp_path):
    path = plot_trajectory(six_weeks(), tmp_path / "deep" / FIGURE_NAME)
    assert path == tmp_path / "deep" / FIGURE_NAME
    assert path.stat().st_size > 50_000
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert height > 1000 and width > 1000 and height > width  # four panels stacked
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert not list(path.parent.glob(".*tmp*")), "no temporary file left behind"


def test_the_summary_sentence_says_what_serves_since_when_what_it_saved_and_how_accurate(report):
    folder, page = report
    assert summary_text(page) == (
        "After 6 weeks the cascade router casc-v2 serves, in service since week 6; the flywheel cost $4.70 "
        "against $6.00 for keeping the production LLM, saving 21.7% ($1.30); on the unbiased test it routes "
        "91.5% (88.5–94.0%) correctly (week 6), against 93.0% (90.0–95.0%) for the production LLM (week 6)."
    )
    assert (folder / FIGURE_NAME).stat().st_size > 50_000
    assert "data:image/png;base64,iVBOR" in page  # the figure travels inside the page


def test_the_table_has_a_formatted_row_per_week(report):
    _, page = report
    rows = [html.unescape(row) for row in table_rows(page)]
    assert len(rows) == 6
    for number, row in enumerate(rows, start=1):
        assert re.search(rf'<td class="num">{number}<br>', row)
    assert "$2.000" in rows[0] and "—" in rows[0]  # 4 significant digits; no accuracy measured in week 1
    assert "92.5% (80.0–97.0%)" in rows[1] and "n=40" in rows[1]
    assert "91.0% (88.0–94.0%)" in rows[1] and "casc" in rows[1]  # the best student that week
    assert "60 / 60" in rows[1] and "audit 30, judge_flag 18, uncertainty 12" in rows[1]
    assert "launch week; new feedback" in rows[1]
    assert "$0.8123" in rows[3] and "80.0% (65.0–89.0%)" in rows[3]
    assert "rollback casc, shadow casc-v2" in rows[3]
    assert "$3.40" in rows[3] and "($4.00)" in rows[3]
    assert "$0.6000" in rows[5] and "reject minilm-v2" in rows[5]


def test_the_events_are_listed_with_their_reasons(report):
    page = html.unescape(report[1])
    events = re.findall(r"<li>(.*?)</li>", page, re.S)
    assert [re.sub(r"<.*?>", "", e) for e in events][:3] == [
        "Week 2: shadow casc: passes the offline promotion rule",
        "Week 3: promote casc: shadow week held: agreement 96.0%",
        "Week 4: rollback casc: accuracy 80.0% [65.0, 89.0] on 40 audited items is below the gate's 90.0% "
        "(registry registry.json)",
    ]
    assert len(events) == 6


def test_hostile_model_names_are_escaped_and_drawn(tmp_path):
    hostile = "<script>alert('x')</script> $a$ & co"
    trajectory = six_weeks()
    for entry in trajectory["weeks"]:
        if entry["router"] == "casc-v2":
            entry["router"] = hostile
        entry["models"] = {hostile if k == "casc-v2" else k: v for k, v in entry["models"].items()}
        if entry["in_service"]["name"] == "casc-v2":
            entry["in_service"]["name"] = hostile
        for event in entry["events"]:
            if event["model"] == "casc-v2":
                event["model"] = hostile
                event["reason"] = '<img src=x onerror="alert(1)">'
    trajectory["flywheel_id"] = "<b>id</b>"

    page = write_report(trajectory, tmp_path).read_text()
    assert "<script>" not in page and "<img src=x" not in page and "<b>id</b>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; $a$ &amp; co" in page
    assert f"the cascade router {hostile} serves" in summary_text(page)
    assert (tmp_path / FIGURE_NAME).stat().st_size > 50_000  # `$a$` did not break the figure's text


def test_the_page_shows_no_machine_paths(report):
    folder, page = report
    page = visible(page)
    assert "flywheel.yaml" in page
    assert "/work/" not in page and str(folder) not in page
    assert not re.search(r"(?<![\w<])/(?:[\w.-]+/)+[\w.-]+", page), "an absolute path in the page"


def test_missing_and_null_fields_do_not_crash(tmp_path):
    bare = {
        "weeks": [
            {"week": 2},
            {
                "week": 1,
                "router": None,
                "models": None,
                "cost": None,
                "reviews": {"total": None, "budget": None, "by_policy": None},
                "in_service": None,
                "events": None,
                "trigger": None,
                "traffic": None,
            },
            {
                "week": 3,
                "router": "m",
                "router_kind": "single",
                "models": {"m": {"kind": "single", "accuracy": None}, "p": {"kind": "production"}},
                "in_service": {
                    "name": "m",
                    "accuracy": 0.7,
                    "ci_low": None,
                    "ci_high": None,
                    "reviewed": None,
                },
                "events": [{"kind": "promote"}, "not an event"],
                "cost": {"usd": 0.5, "production_only_usd": 2.0, "cost_per_1k": None},
                "satisfied_share": None,
            },
        ]
    }
    page = write_report(bare, tmp_path).read_text()
    assert summary_text(page).startswith("After 3 weeks the small router m serves, in service since week 3")
    assert "the flywheel cost $0.50 against $2.00" in summary_text(page)
    assert "week 3's — audited items it routes 70.0% correctly" in summary_text(page)
    assert len(table_rows(page)) == 3
    assert (tmp_path / FIGURE_NAME).is_file()


@pytest.mark.parametrize(
    ("trajectory", "message"),
    [
        ([], "JSON object"),
        ({}, "no weeks"),
        ({"weeks": []}, "no weeks"),
        ({"weeks": [{"week": "1"}]}, r"weeks\[0\] has no integer 'week'"),
        ({"weeks": [{"week": 1}, {"week": 1}]}, r"repeats weeks \[1\]"),
    ],
)
def test_a_trajectory_that_cannot_be_drawn_is_refused_clearly(tmp_path, trajectory, message):
    with pytest.raises(ValueError, match=message):
        write_report(trajectory, tmp_path)
    assert not list(tmp_path.iterdir())


def test_rewriting_the_report_gives_the_same_files(report, tmp_path):
    write_report(six_weeks(), tmp_path)
    for name in (FIGURE_NAME, REPORT_NAME):
        assert (report[0] / name).read_bytes() == (tmp_path / name).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([FIGURE_NAME, REPORT_NAME])


def test_a_run_folder_is_reported_from_its_trajectory_json(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no trajectory\.json"):
        report_run(tmp_path)
    (tmp_path / "trajectory.json").write_text(json.dumps(six_weeks()))
    assert report_run(tmp_path) == tmp_path / REPORT_NAME
    assert "casc-v2" in summary_text((tmp_path / REPORT_NAME).read_text())


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.6, "0.6000"),
        (0.812345, "0.8123"),
        (1234.567, "1,235"),
        (0.0000123456, "0.00001235"),
        (0, "0"),
        (None, "—"),
    ],
)
def test_dollars_per_1k_keep_four_significant_digits_without_exponents(value, shown):
    assert _significant(value) == shown
