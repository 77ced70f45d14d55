"""The test-size flywheel (`flywheel run --config configs/flywheel-test.yaml`): weeks of a small world through
the real parts — the production LLM's logs, then the router service over HTTP, cycles through papermill with
the real Argilla server, the gate — and its trajectory."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.registry import Registry
from flywheel.core.store import Store

CONFIG = REPO_ROOT / "configs" / "flywheel-test.yaml"


@pytest.fixture(scope="module")
def flywheel_run(tmp_path_factory, jupyter_kernel, redis_server):
    runs = tmp_path_factory.mktemp("flywheel-runs")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ARGILLA_API_URL", "ARGILLA_API_KEY", "FLYWHEEL_STORE_URL")
    }
    env["FLYWHEEL_ARGILLA_HOME"] = str(runs / "argilla")
    done = subprocess.run(
        [sys.executable, "-m", "flywheel.cli", "run", "--config", str(CONFIG), "--runs-dir", str(runs)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    folder = REPO_ROOT / done.stdout.strip().splitlines()[-1]  # the flywheel's folder is the last line
    return folder, json.loads((folder / "trajectory.json").read_text())


def test_every_week_is_in_the_trajectory_with_its_traffic_and_cost(flywheel_run):
    folder, trajectory = flywheel_run
    config = load_config(CONFIG)
    weeks = trajectory["weeks"]
    assert [w["week"] for w in weeks] == list(range(1, config.flywheel.weeks + 1))
    store = Store(f"sqlite:///{folder / 'store.db'}")
    logged = store.interactions_frame(["id", "timestamp", "model"])
    assert sum(w["traffic"] for w in weeks) == len(logged)  # every question logged once, in its week
    starts = [pd.Timestamp(w["start"], tz="UTC") for w in weeks]
    stamps = pd.to_datetime(logged["timestamp"], utc=True)
    assert stamps.min() >= starts[0] and stamps.max() < starts[-1] + pd.Timedelta(days=7)
    for week in weeks:
        cost = week["cost"]
        assert sum(week["answered_by"].values()) == week["traffic"]
        assert 0 < cost["usd"] <= cost["production_only_usd"] * 1.2  # shadow calls may cost a little extra
    last = weeks[-1]["cost"]
    assert last["cumulative_production_only_usd"] == pytest.approx(
        sum(w["cost"]["production_only_usd"] for w in weeks)
    )
    assert trajectory["summary"]["cost_ratio"] == pytest.approx(
        last["cumulative_usd"] / last["cumulative_production_only_usd"]
    )


def test_cycles_run_when_status_says_so_and_stay_within_the_review_budget(flywheel_run):
    _, trajectory = flywheel_run
    budget = load_config(CONFIG).review.budget
    cycled = [w for w in trajectory["weeks"] if w["cycle_id"]]
    assert cycled, "no cycle ran"
    assert all(w["trigger"]["should_run"] == bool(w["cycle_id"]) for w in trajectory["weeks"])
    for week in cycled:
        assert 0 < week["reviews"]["total"] <= budget
        assert sum(week["reviews"]["by_policy"].values()) == week["reviews"]["total"]
        production = week["models"]["production"]
        assert production["ci_low"] <= production["accuracy"] <= production["ci_high"] + 1e-9
        assert set(week["models"]) >= {"production", *(c.name for c in load_config(CONFIG).candidates)}


def test_the_registry_and_the_events_agree(flywheel_run):
    folder, trajectory = flywheel_run
    registry = Registry(Store(f"sqlite:///{folder / 'store.db'}"))
    recorded = [(e.event, e.model_name) for e in registry.history()]
    events = [(e["kind"], e["model"]) for w in trajectory["weeks"] for e in w["events"]]
    for kind, model in events:
        if kind in ("promote", "shadow"):
            assert (kind, model) in recorded
    served = [w["router"] for w in trajectory["weeks"]]
    promoted_at = [w["week"] for w in trajectory["weeks"] for e in w["events"] if e["kind"] == "promote"]
    if promoted_at:  # a router promoted after week k serves week k + 1 over HTTP
        week = promoted_at[0]
        if week < len(served):
            assert served[week] != "production"
    assert (folder / "trajectory.png").stat().st_size > 10_000
    page = (folder / "flywheel.html").read_text()
    assert trajectory["flywheel_id"] in page and str(REPO_ROOT) not in page
