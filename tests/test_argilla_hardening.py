"""The embedded Argilla server, hardened (issue 11): an owner-only home, orphans of a crashed server
stopped, the simulated panel riding out an outage, and labels imported in bulk through the API.

A fresh server in a temporary home for this module (its virtualenv is the cached one, as in
test_argilla_server.py)."""

import json
import os
import signal
import stat
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import SMALL_CATALOG, embedded_argilla, small_demo_world

from flywheel.core import argilla_login

EXPERTS = SMALL_CATALOG


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A state folder as an older version left it: world-readable folders and files."""
    home = tmp_path_factory.mktemp("argilla-home")
    (home / "logs").mkdir()
    (home / "logs" / "server.log").write_text("an old log\n")
    os.chmod(home, 0o755)
    os.chmod(home / "logs", 0o755)
    os.chmod(home / "logs" / "server.log", 0o644)
    return home


@pytest.fixture(scope="module")
def server(home, redis_server):
    with embedded_argilla(home) as info:
        yield info


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small demo world ingested into its own store."""
    return small_demo_world(tmp_path_factory.mktemp("world"), EXPERTS)


def session_for(server, name, log=lambda m: None):
    from flywheel.triage.review import ReviewSession, ReviewTarget

    target = ReviewTarget(server.url, server.api_key, server.workspace, name, embedded=True)
    return ReviewSession(target, list(EXPERTS), 1, retry_seconds=120, log=log)


def unsatisfied(store):
    interactions = store.interactions_frame()
    return interactions[interactions["satisfied"].eq(False)]


def wait_for(condition, seconds=60.0, what="condition"):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def crash_server():
    """SIGKILL the server process (as a crash would), leaving redis-server and the worker running."""
    from flywheel.argilla import server as argilla_server

    pid = argilla_server.status()["pids"]["server"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), what="the server to die")


def modes_open_to_others(root):
    """Paths under root (itself included) that group or others may read, write or enter."""
    found = []
    for folder, _, files in os.walk(root):
        for path in [folder, *(os.path.join(folder, name) for name in files)]:
            if os.path.islink(path):
                continue
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if mode & 0o077:
                found.append(f"{os.path.relpath(path, root)} {mode:o}")
    return found


# --- item 15: the home and everything in it owner-only ------------------------------------------------------
def test_home_and_everything_in_it_is_owner_only_now_and_later(server, world, home):
    from flywheel.argilla import server as argilla_server

    _, store = world
    assert (home / "home" / "argilla.db").is_file()
    database = b"".join(path.read_bytes() for path in (home / "home").glob("argilla.db*"))  # WAL: -wal, -shm
    assert server.api_key.encode() in database  # why it matters
    session_for(server, "private").push(unsatisfied(store).head(5))  # the server writes after start
    assert modes_open_to_others(home) == []
    for path in (home / "home").glob("argilla.db*"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    for component in ("server", "redis", "worker"):  # what they create later is owner-only too
        pid = argilla_server.status()["pids"][component]
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        umask = next(line for line in lines if line.startswith("Umask:"))
        assert umask.split()[1] == "0077", (component, umask)


# --- item 4: orphans of a crashed server ----------------------------------------------------------------
def test_a_crashed_servers_redis_and_worker_are_named_and_stopped(server):
    from flywheel.argilla import server as argilla_server

    before = argilla_server.status()["pids"]
    crash_server()
    state = argilla_server.status()
    assert not state["running"]
    assert state["orphans"] == {"worker": before["worker"], "redis": before["redis"]}
    assert "redis-server" in state["message"] and "worker" in state["message"]
    assert "flywheel argilla down" in state["message"]

    # `up` notices them and starts the helpers afresh with the server
    log = []
    again = argilla_server.up(log=log.append)
    assert again.started and again.url == server.url
    assert any("left running" in line for line in log)
    assert gone(before["worker"]) and gone(before["redis"])
    assert argilla_server.status()["orphans"] == {}

    # a cycle that started the server stops its orphans at the end ...
    argilla_server.down()
    messages = []
    with argilla_login.stopped_after_if_started(log=messages.append):
        argilla_server.up(log=messages.append)
        pids = argilla_server.status()["pids"]
        crash_server()
    assert gone(pids["worker"]) and gone(pids["redis"])
    assert any("left running" in line for line in messages)
    assert argilla_server.status()["message"] == "nothing is running"

    # ... and so does `down`
    argilla_server.up()
    pids = argilla_server.status()["pids"]
    crash_server()
    assert set(argilla_server.down()) == {"worker", "redis"}
    assert gone(pids["worker"]) and gone(pids["redis"])
    argilla_server.up()  # for the tests after this one (same port: state keeps it only after a crash)


# --- item 17: the simulated panel rides out an outage ------------------------------------------------------
def test_simulated_panel_retries_through_an_outage_like_push_and_pull(server, world):
    from flywheel.argilla import server as argilla_server
    from flywheel.demo.panel import SimulatedPanel

    out, store = world
    server = argilla_server.up()  # the URL of the running server (earlier tests restarted it)
    queue = unsatisfied(store)
    retrying = threading.Event()
    session = session_for(server, "panel-outage", log=lambda m: retrying.set() if "retrying" in m else None)
    session.push(queue)
    panel = SimulatedPanel(out / "hidden_truth.jsonl", list(EXPERTS), error_rate=0.0, seed=3, size=2)

    crash_server()
    outcome = {}

    def answer():
        try:
            outcome["answered"] = panel.answer_in_argilla(session)
        except Exception as err:
            outcome["error"] = err

    worker = threading.Thread(target=answer)
    worker.start()
    wait_for(lambda: retrying.is_set() or not worker.is_alive(), 120, "the panel to hit the outage")
    assert "error" not in outcome, f"the panel gave up during the outage: {outcome.get('error')!r}"
    assert retrying.is_set() and worker.is_alive()
    argilla_server.up()  # back on the same port; the panel's retries find it
    worker.join(timeout=300)
    assert not worker.is_alive()
    assert "error" not in outcome, f"the panel gave up during the outage: {outcome.get('error')!r}"
    assert outcome["answered"]["submitted"] == 2 * len(queue)
    assert session.progress()["completed"] == len(queue)


# --- item 6: labels in bulk, through Argilla ---------------------------------------------------------------
def test_import_labels_submits_as_reviewers_pulls_like_expert_answers_and_reimports_nothing(
    server, world, tmp_path
):
    from flywheel.argilla import server as argilla_server
    from flywheel.triage.review import import_labels

    _, store = world
    server = argilla_server.up()
    queue = unsatisfied(store)
    session = session_for(server, "bulk-import")
    session.push(queue.head(10))  # the rest are not in the dataset yet
    satisfied = store.interactions_frame().query("satisfied == True")["id"].iloc[0]
    ids = list(queue["id"])
    good = [
        *(
            {"interaction_id": i, "expert": "it_help", "cause": "routing", "reviewer": "alice"}
            for i in ids[:5]
        ),
        *({"interaction_id": i, "expert": "facilities", "cause": "retrieval"} for i in ids[8:14]),
        {"interaction_id": satisfied, "expert": "hr_benefits", "cause": "other", "reviewer": "bob"},
    ]
    bad = [
        {"interaction_id": "ix-not-stored", "expert": "it_help", "cause": "routing"},
        {"interaction_id": ids[20], "expert": "astrology", "cause": "routing"},
        {"interaction_id": ids[21], "expert": "it_help", "cause": "bad luck"},
        {"interaction_id": ids[0], "expert": "it_help", "cause": "routing", "reviewer": "alice"},  # duplicate
        {"interaction_id": ids[22], "expert": "it_help", "cause": "routing", "reviewer": "carol"},
        {"interaction_id": ids[22], "expert": "facilities", "cause": "routing", "reviewer": "carol"},
    ]
    labels = tmp_path / "labels.csv"
    pd.DataFrame(good + bad).to_csv(labels, index=False)

    report = import_labels(session, store, labels)
    assert report.submitted == len(good) and report.already == 0
    assert report.pushed == len(set(ids[10:14]) | {satisfied})  # not yet in the dataset: pushed first
    assert report.rejected == len(bad)
    assert report.reviewers == ["alice", "bob", "imported"]
    rejects = [json.loads(line) for line in Path(report.rejects_path).read_text().splitlines()]
    assert len(rejects) == len(bad) and all(r["reason"] for r in rejects)
    assert {r["interaction_id"] for r in rejects} == {b["interaction_id"] for b in bad}

    # `pull` brings them back exactly as expert answers
    pulled = session.pull(store)
    assert pulled.added == len(good)
    reviews = store.reviews_frame().set_index(["interaction_id", "reviewer"])
    assert reviews.loc[(ids[0], "alice"), "correct_expert"] == "it_help"
    assert reviews.loc[(ids[9], "imported"), "cause"] == "retrieval"
    assert reviews.loc[(satisfied, "bob"), "correct_expert"] == "hr_benefits"
    assert set(reviews["origin"]) == {"argilla"}

    # idempotent: a re-import submits nothing, pushes nothing, and reports the same bad rows
    again = import_labels(session, store, labels)
    assert (again.submitted, again.already, again.pushed, again.rejected) == (0, len(good), 0, len(bad))
    assert session.pull(store).added == 0

    # a different answer for a record the reviewer already answered is reported, never overwritten
    changed = tmp_path / "changed.jsonl"
    row = {"interaction_id": ids[0], "expert": "facilities", "cause": "routing", "reviewer": "alice"}
    changed.write_text(json.dumps(row) + "\n")
    third = import_labels(session, store, changed)
    assert third.submitted == 0 and third.rejected == 1
    assert "answered otherwise" in json.loads(Path(third.rejects_path).read_text())["reason"]
    answers, _ = session.answers()
    mine = answers[(answers["interaction_id"] == ids[0]) & (answers["reviewer"] == "alice")]
    assert list(mine["correct_expert"]) == ["it_help"]


def test_review_import_command_with_a_parquet_file(server, world, tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from flywheel.argilla import server as argilla_server
    from flywheel.cli import app
    from flywheel.core.config import REPO_ROOT, read_config_mapping

    _, store = world
    argilla_server.up()
    raw = read_config_mapping(REPO_ROOT / "configs" / "test.yaml")  # test.yaml extends demo.yaml
    raw["experts"] = EXPERTS
    raw["review"] = {**raw.get("review", {}), "dataset": "cli-import"}  # an overlay may not name review
    config = tmp_path / "import.yaml"
    config.write_text(yaml.safe_dump(raw))
    ids = list(unsatisfied(store)["id"])[30:33]
    labels = tmp_path / "labels.parquet"
    pd.DataFrame({"interaction_id": ids, "expert": ["it_help"] * 3, "cause": ["routing"] * 3}).to_parquet(
        labels
    )

    result = CliRunner().invoke(
        app,
        [
            "review",
            "import",
            str(labels),
            "--config",
            str(config),
            "--store",
            store.url,
            "--reviewer",
            "dana",
        ],
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["submitted"] == 3 and counts["pushed"] == 3 and counts["rejected"] == 0
    assert counts["pulled"]["added"] == 3
    reviews = store.reviews_frame()
    assert set(reviews[reviews["reviewer"] == "dana"]["interaction_id"]) == set(ids)
    assert argilla_server.is_running()  # it was running before: the command leaves it so
