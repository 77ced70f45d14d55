import json
import sqlite3
from datetime import UTC, datetime

import pandas as pd
import pytest
from typer.testing import CliRunner

from flywheel.collect.drift import cycle_status, drift_table, plot_drift, store_drift
from flywheel.collect.ingest import ingest
from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.pii import PiiMasker
from flywheel.core.store import Store

CONFIG = load_config(REPO_ROOT / "configs" / "demo.yaml")


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    """The full-size demo world (seed 7) ingested once; tests that write to it copy it first."""
    from flywheel.demo.generator import generate_demo

    folder = tmp_path_factory.mktemp("drift")
    source = CONFIG.source
    generate_demo(folder, CONFIG.experts, source.n_interactions, source.weeks, source.start, seed=CONFIG.seed)
    store = Store(f"sqlite:///{folder / 'store.db'}")
    ingest(store, [folder / "logs.jsonl"], progress=False, masker=PiiMasker(names=False))
    return folder


def open_copy(folder, tmp_path) -> Store:
    """A copy by SQLite's backup API: in WAL mode the store's file alone may lack recent writes."""
    target = tmp_path / "store.db"
    with sqlite3.connect(folder / "store.db") as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return Store(f"sqlite:///{target}")


def test_the_launch_week_is_flagged_and_no_week_before_it(demo_store, tmp_path):
    table = store_drift(open_copy(demo_store, tmp_path), CONFIG.collect.drift)
    assert len(table) == 6
    # the week after the launch may be flagged too: its mix moving back is a shift from the launch week
    assert table["flagged"].tolist()[:4] == [False, False, False, True]
    launch = table.iloc[3]
    assert str(launch["start"]) == "2026-09-28"
    assert "traffic_mix" in launch["moved"]
    assert launch["p_mix"] < 1e-6
    assert launch["share_product_docs"] > 1.8 * table.iloc[:3]["share_product_docs"].mean()
    assert pd.isna(table.iloc[0]["p_mix"])  # nothing to compare the first window with
    assert table["routing_error_rate"].isna().all()  # no reviews yet


def _two_weeks(n: int = 100) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"i{k}" for k in range(2 * n)],
            "timestamp": pd.to_datetime(["2026-09-07"] * n + ["2026-09-14"] * n, utc=True),
            "routed_expert": ["it_help", "facilities"] * n,
            "satisfied": [True, False] * n,
        }
    )


def test_routing_error_rate_is_the_share_of_reviewed_interactions():
    reviewed = [f"i{k}" for k in range(50)] + [f"i{k}" for k in range(100, 150)]
    routing = set(reviewed[:2]) | set(reviewed[50:90])  # 2 of 50, then 40 of 50
    reviews = pd.DataFrame(
        {"interaction_id": reviewed, "cause": ["routing" if i in routing else "none" for i in reviewed]}
    )
    table = drift_table(_two_weeks(), reviews, min_window_size=30)
    assert table["reviewed"].tolist() == [50, 50]
    assert table["routing_error_rate"].round(2).tolist() == [0.04, 0.80]
    assert table["moved"].tolist() == [[], ["routing_errors"]]


def test_a_window_nobody_has_reviewed_yet_is_not_routing_drift():
    """The newest week before its cycle: no reviews, so no routing errors found; that is not a change."""
    reviewed = [f"i{k}" for k in range(60)]
    reviews = pd.DataFrame({"interaction_id": reviewed, "cause": ["routing"] * 20 + ["none"] * 40})
    table = drift_table(_two_weeks(), reviews, min_window_size=30)
    assert table["reviewed"].tolist() == [60, 0]
    assert pd.isna(table["routing_error_rate"].iloc[1]) and pd.isna(table["p_routing"].iloc[1])
    assert not table["flagged"].any()


def test_small_windows_are_not_tested():
    frame = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "timestamp": pd.to_datetime(["2026-09-07", "2026-09-08", "2026-09-14", "2026-09-15"], utc=True),
            "routed_expert": ["x", "x", "y", "y"],
            "satisfied": [True, True, False, False],
        }
    )
    table = drift_table(frame, None, min_window_size=30)
    assert table["p_mix"].isna().all() and not table["flagged"].any()


def test_plot_has_three_panels_and_is_saved(demo_store, tmp_path):
    table = store_drift(open_copy(demo_store, tmp_path), CONFIG.collect.drift)
    fig = plot_drift(table, tmp_path / "drift.png")
    assert len(fig.axes) == 3
    assert (tmp_path / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_status_wants_a_cycle_until_one_is_marked(demo_store, tmp_path):
    store = open_copy(demo_store, tmp_path)
    first = cycle_status(store, CONFIG.collect)
    assert first["should_run"] is True
    rated = json.loads((demo_store / "demo_meta.json").read_text())["counts"]["rated"]
    assert first["new_feedback"] == rated
    assert first["last_cycle"] is None
    assert next(iter(first["flagged_windows"])) == "2026-09-28/2026-10-04"
    store.mark_cycle("cycle-1")
    after = cycle_status(store, CONFIG.collect)
    assert (after["should_run"], after["new_feedback"], after["flagged_windows"]) == (False, 0, {})
    assert after["last_cycle"]["cycle_id"] == "cycle-1"


def test_status_cli_prints_json_and_exit_code(demo_store, tmp_path):
    from flywheel.cli import app

    store = open_copy(demo_store, tmp_path)
    url = str(store.engine.url)
    runner = CliRunner()
    result = runner.invoke(app, ["status", "--store", url, "--exit-code"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["should_run"] is True
    store.mark_cycle("c1")
    result = runner.invoke(app, ["status", "--store", url, "--exit-code"])
    assert result.exit_code == 1
    assert json.loads(result.output)["should_run"] is False


def test_new_feedback_after_a_cycle_triggers_the_next(tmp_path, write_jsonl):
    from conftest import good_record

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    config = CONFIG.collect.model_copy(
        update={"drift": CONFIG.collect.drift.model_copy(update={"min_new_feedback": 3})}
    )
    ingest(
        store,
        [write_jsonl("a.jsonl", [good_record(i) for i in range(5)])],
        progress=False,
        masker=PiiMasker(names=False),
    )
    store.mark_cycle("c1")
    assert cycle_status(store, config)["new_feedback"] == 0
    late = [
        {
            "interaction_id": f"ix-{i:06d}",
            "rating": 1,
            "timestamp": datetime(2026, 9, 9, tzinfo=UTC).isoformat(),
        }
        for i in range(3)
    ]
    ingest(store, [write_jsonl("fb.jsonl", late)], progress=False, masker=PiiMasker(names=False))
    status = cycle_status(store, config)
    assert (status["should_run"], status["new_feedback"]) == (True, 3)
