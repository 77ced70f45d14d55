"""The promotion registry: promote, current, history, rollback, the JSON export and the CLI.
The registry itself runs on both store backends: SQLite and PostgreSQL (a throwaway server, pgcluster.py);
in CI (CI=true) a missing PostgreSQL fails instead of skipping."""

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from flywheel.cli import app
from flywheel.core.config import REPO_ROOT
from flywheel.core.registry import Registry, RegistryError, promotions
from flywheel.core.routers import write_candidate_card
from flywheel.core.store import Store


def candidate(tmp_path, name: str):
    """A folder that looks like a trained candidate (the registry reads only candidate.json)."""
    folder = tmp_path / "candidates" / name
    folder.mkdir(parents=True)
    write_candidate_card(folder, kind="tfidf_logreg", name=name, parameters=10)
    return folder


@pytest.fixture
def registry(any_store, tmp_path):
    return Registry(any_store, tmp_path / "registry.json")


def test_empty_registry_has_no_current_and_no_history(registry):
    assert registry.current() is None
    assert registry.history() == []
    snapshot = registry.snapshot()
    assert {k: snapshot[k] for k in ("current", "stack", "history")} == {
        "current": None,
        "stack": [],
        "history": [],
    }
    assert snapshot["serving"]["state"] == "production"
    assert "nothing has been promoted yet" in snapshot["serving"]["message"]


def test_promote_records_name_path_metrics_cycle_time_and_reason(registry, tmp_path):
    folder = candidate(tmp_path, "tfidf-logreg")
    entry = registry.promote(
        folder, reason="cheapest eligible", metrics={"accuracy": 0.91, "cost_per_1k": 0.002}, cycle_id="c-1"
    )
    current = registry.current()
    assert current == entry
    assert current.event == "promote"
    assert current.model_name == "tfidf-logreg"  # from candidate.json
    assert current.artifact_path == str(folder.resolve())
    assert current.metrics == {"accuracy": 0.91, "cost_per_1k": 0.002}
    assert current.cycle_id == "c-1"
    assert current.reason == "cheapest eligible"
    assert current.created_at is not None and current.created_at.tzinfo is not None


def test_promote_writes_the_json_export(registry, tmp_path):
    registry.promote(candidate(tmp_path, "a"), reason="r1", metrics={"accuracy": 0.9})
    exported = json.loads((tmp_path / "registry.json").read_text())
    assert exported["current"]["model_name"] == "a"
    assert exported["current"]["metrics"] == {"accuracy": 0.9}
    assert [e["event"] for e in exported["history"]] == ["promote"]


def test_promote_refuses_a_folder_without_candidate_json(registry, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"candidate\.json"):
        registry.promote(tmp_path / "empty", reason="r")
    assert registry.history() == []


def test_promote_needs_a_reason(registry, tmp_path):
    with pytest.raises(ValueError, match="reason"):
        registry.promote(candidate(tmp_path, "a"), reason="  ")


def test_promoting_twice_makes_the_second_current(registry, tmp_path):
    registry.promote(candidate(tmp_path, "a"), reason="first")
    registry.promote(candidate(tmp_path, "b"), reason="second")
    assert registry.current().model_name == "b"
    assert [(e.event, e.model_name) for e in registry.history()] == [("promote", "a"), ("promote", "b")]


def test_promoting_the_current_artifact_again_is_a_no_op(registry, tmp_path):
    folder = candidate(tmp_path, "a")
    first = registry.promote(folder, reason="first")
    again = registry.promote(folder, reason="re-run of the same cycle")
    assert again == first
    assert len(registry.history()) == 1


def test_rollback_with_nothing_promoted_is_a_clear_error(registry):
    with pytest.raises(RegistryError, match=r"production model is serving \(nothing has been promoted yet"):
        registry.rollback()


def test_rollback_restores_the_previous_entry_and_is_recorded(registry, tmp_path):
    first = registry.promote(candidate(tmp_path, "a"), reason="first", metrics={"accuracy": 0.8})
    second = registry.promote(candidate(tmp_path, "b"), reason="second")
    event = registry.rollback("b misroutes payroll questions")
    assert registry.current() == first
    assert event == registry.history()[-1]
    assert event.event == "rollback"
    assert (event.undoes_seq, event.restores_seq) == (second.seq, first.seq)
    assert event.model_name == "a" and event.metrics == {"accuracy": 0.8}
    assert event.reason == "b misroutes payroll questions"
    exported = json.loads((tmp_path / "registry.json").read_text())
    assert exported["current"]["model_name"] == "a"
    assert [e["event"] for e in exported["history"]] == ["promote", "promote", "rollback"]


def test_rollback_then_promote_then_rollback(registry, tmp_path):
    registry.promote(candidate(tmp_path, "a"), reason="1")
    registry.promote(candidate(tmp_path, "b"), reason="2")
    registry.rollback()
    registry.promote(candidate(tmp_path, "c"), reason="3")
    assert registry.current().model_name == "c"
    assert registry.rollback().model_name == "a"  # b was rolled back: it is not restored
    assert registry.rollback().event == "production"
    with pytest.raises(RegistryError):
        registry.rollback()


def test_rollbacks_walk_back_through_several_promotions(registry, tmp_path):
    for name in ("a", "b", "c"):
        registry.promote(candidate(tmp_path, name), reason=name)
    assert registry.rollback().model_name == "b"
    assert registry.rollback().model_name == "a"
    assert registry.current().model_name == "a"


def test_store_creates_the_table_and_the_registry_survives_reopening(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    Store(url)
    assert "promotions" in sa.inspect(sa.create_engine(url)).get_table_names()
    Registry(Store(url)).promote(candidate(tmp_path, "a"), reason="r", metrics={"f1": {"it_help": 0.5}})
    reopened = Registry(Store(url)).current()
    assert reopened.model_name == "a"
    assert reopened.metrics == {"f1": {"it_help": 0.5}}
    assert promotions.name == "promotions"


# --- CLI --------------------------------------------------------------------------------------------


def cli(tmp_path, *args):
    store_url = f"sqlite:///{tmp_path / 'cli.db'}"
    base = [
        "promote",
        "--config",
        str(REPO_ROOT / "configs" / "test.yaml"),
        "--store",
        store_url,
        "--runs-dir",
        str(tmp_path),
    ]
    return CliRunner().invoke(app, [*base, *args])


def test_cli_promote_show_and_rollback(tmp_path):
    a, b = candidate(tmp_path, "a"), candidate(tmp_path, "b")
    assert cli(tmp_path, str(a), "--reason", "first", "--metrics", '{"accuracy": 0.9}').exit_code == 0
    result = cli(tmp_path, str(b), "--reason", "second", "--cycle-id", "c-2")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["current"]["model_name"] == "b"

    shown = json.loads(cli(tmp_path, "--show").stdout)
    assert shown["current"]["cycle_id"] == "c-2"
    assert len(shown["history"]) == 2

    rolled = cli(tmp_path, "--rollback")
    assert rolled.exit_code == 0, rolled.output
    summary = json.loads(rolled.stdout)
    assert (summary["rolled_back"], summary["current"]) == ("b", shown["history"][0])
    assert summary["serving"]["state"] == "promoted" and summary["serving"]["model_name"] == "a"
    exported = json.loads((tmp_path / "registry-test.json").read_text())  # beside the runs, per config
    assert exported["current"]["model_name"] == "a"


def test_cli_rollback_with_nothing_promoted_fails_clearly(tmp_path):
    result = cli(tmp_path, "--rollback")
    assert result.exit_code == 1
    assert "nothing to roll back" in result.stderr
    assert "production model is serving" in result.stderr


def test_cli_needs_exactly_one_action(tmp_path):
    assert cli(tmp_path).exit_code == 2
    assert cli(tmp_path, "--show", "--rollback").exit_code == 2
    assert cli(tmp_path, str(candidate(tmp_path, "a"))).exit_code == 2  # no --reason


def test_cli_promote_of_a_non_candidate_fails(tmp_path):
    result = cli(tmp_path, str(tmp_path), "--reason", "oops")
    assert result.exit_code == 1
    assert "candidate.json" in result.stderr
