"""The test-size flywheel (`flywheel run --config configs/flywheel-test.yaml`): weeks of a small world through
the real parts — the production LLM's logs, then the router service over HTTP, cycles through papermill with
the real Argilla server, the gate — and its trajectory."""

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
from conftest import wait_until

from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.registry import Registry
from flywheel.core.store import Store

CONFIG = REPO_ROOT / "configs" / "flywheel-test.yaml"


def flywheel_env(runs) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ARGILLA_API_URL", "ARGILLA_API_KEY", "FLYWHEEL_STORE_URL")
    }
    env["FLYWHEEL_ARGILLA_HOME"] = str(runs / "argilla")
    return env


def run_to_the_end(args: list[str], env: dict[str, str]):
    done = subprocess.run(
        [sys.executable, "-m", "flywheel.cli", "run", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    folder = REPO_ROOT / done.stdout.strip().splitlines()[-1]  # the flywheel's folder is the last line
    return folder, json.loads((folder / "trajectory.json").read_text())


@pytest.fixture(scope="module")
def flywheel_run(tmp_path_factory, jupyter_kernel, redis_server):
    runs = tmp_path_factory.mktemp("flywheel-runs")
    return run_to_the_end(["--config", str(CONFIG), "--runs-dir", str(runs)], flywheel_env(runs))


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
    # the gate's own needs: a shadow week ends, or a promoted router served its first week, in a cycle
    for before, week in zip(trajectory["weeks"], trajectory["weeks"][1:], strict=False):
        if any(e["kind"] in ("shadow", "promote") for e in before["events"]):
            assert week["cycle_id"], f"week {week['week']} judged nothing"
            assert any("the gate judges it" in r for r in week["trigger"]["reasons"])


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


def _cycle_of_week_past_collect(runs, week: int) -> bool:
    """The flywheel is in `week`'s cycle, whose collect stage is done."""
    states = list(runs.glob("flywheel-*/state.json"))
    try:
        progress = json.loads(states[0].read_text())["in_progress"] if states else None
    except (OSError, ValueError):  # written atomically, but the folder may be new
        return False
    if not progress or progress["week"] != week or not progress.get("cycle"):
        return False
    cycles = sorted(states[0].parent.glob("cycles/2*/manifest.json"))
    started = [m for m in cycles if m.parent.name not in progress["cycle"]["before"]]
    if not started:
        return False
    stages = json.loads(started[-1].read_text()).get("stages", {})
    return stages.get("01_collect", {}).get("status") == "done"


# Runs `flywheel run` with the registry's promote killing the whole process group right after its write: the
# gate's first promotion is made, and nothing after it (the week's state, its trajectory) is written.
KILLED_AFTER_THE_GATES_PROMOTION = """
import os, signal, sys
from flywheel.core.registry import Registry
write = Registry.promote
def promote_then_die(self, *args, **kwargs):
    write(self, *args, **kwargs)
    os.killpg(0, signal.SIGKILL)
Registry.promote = promote_then_die
from flywheel.cli import app
app(sys.argv[1:], prog_name="flywheel")
"""


def outline(trajectory) -> list:
    """What a run decided week by week (timings and measured costs aside)."""
    return [
        (
            w["week"], w["router"], w["traffic"], w["feedback"], bool(w["cycle_id"]),
            w["trigger"]["reasons"],
            [(e["kind"], e["model"]) for e in w["events"]],
            w["models"].get("production", {}).get("accuracy"),
        )
        for w in trajectory["weeks"]
    ]  # fmt: skip


def test_a_flywheel_killed_right_after_its_gate_promoted_does_not_promote_twice(flywheel_run, tmp_path):
    """Killed between the gate's registry write and the week's saved state, the resumed run replays the gate:
    the promotion already made is matched, not made again, and the run ends as the one never stopped."""
    runs = tmp_path / "runs"
    env = flywheel_env(runs)
    args = ["run", "--config", str(CONFIG), "--runs-dir", str(runs)]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_THE_GATES_PROMOTION, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        timeout=1800,
        start_new_session=True,
    )
    assert killed.returncode == -signal.SIGKILL
    (folder,) = runs.glob("flywheel-*")
    registry = Registry(Store(f"sqlite:///{folder / 'store.db'}"))
    assert [e.event for e in registry.history()].count("promote") == 1
    try:
        _, resumed = run_to_the_end(["--resume", str(folder)], env)
    finally:
        subprocess.run([sys.executable, "-m", "flywheel.cli", "argilla", "down"], env=env, cwd=REPO_ROOT)
    whole_folder, whole = flywheel_run
    assert outline(resumed) == outline(whole)

    def events(folder):
        history = Registry(Store(f"sqlite:///{folder / 'store.db'}")).history()
        return [(e.event, e.model_name) for e in history]

    assert events(folder) == events(whole_folder)


def test_a_killed_flywheel_resumes_where_it_stopped(flywheel_run, tmp_path, monkeypatch):
    """Killed (SIGKILL to its process group) during week 2's cycle, `flywheel run --resume` takes that cycle
    up rather than starting another, and ends with the trajectory of the run that was never stopped."""
    runs = tmp_path / "runs"
    env = flywheel_env(runs)
    stopped = subprocess.Popen(
        [sys.executable, "-m", "flywheel.cli", "run", "--config", str(CONFIG), "--runs-dir", str(runs)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: _cycle_of_week_past_collect(runs, 2), timeout=900, what="week 2's cycle")
    finally:
        os.killpg(stopped.pid, signal.SIGKILL)
        stopped.wait(timeout=60)
    (folder,) = runs.glob("flywheel-*")
    assert len(json.loads((folder / "trajectory.json").read_text())["weeks"]) == 1
    try:
        resumed_folder, resumed = run_to_the_end(["--resume", str(folder)], env)
    finally:
        subprocess.run([sys.executable, "-m", "flywheel.cli", "argilla", "down"], env=env, cwd=REPO_ROOT)
    assert resumed_folder == folder
    _, whole = flywheel_run
    assert outline(resumed) == outline(whole)
    cycles = [w["cycle_id"] for w in resumed["weeks"] if w["cycle_id"]]
    assert sorted(p.name for p in (folder / "cycles").glob("2*") if p.is_dir()) == sorted(cycles)
    logged = Store(f"sqlite:///{folder / 'store.db'}").interactions_frame(["id"])
    assert len(logged) == logged["id"].nunique() == sum(w["traffic"] for w in resumed["weeks"])
    monkeypatch.setenv("FLYWHEEL_ARGILLA_HOME", str(runs / "argilla"))
    from flywheel.argilla import server as argilla_server

    assert not argilla_server.is_running()  # the resumed run stopped the server its first run started
