"""The registry's shadow stage: a candidate in shadow serves nothing; it ends with a promote of that artifact,
a reject, or another candidate put in shadow; the promotion stack (and so rollbacks) ignores both events.
On both store backends (SQLite and PostgreSQL), like tests/test_registry.py. And the eval stage's
`promote_via: shadow`."""

import json

import pandas as pd
import pytest
import yaml

from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.registry import PRODUCTION, Registry, RegistryError, default_export_path
from flywheel.core.routers import write_candidate_card
from flywheel.core.runs import RunDir
from flywheel.core.store import Store
from flywheel.evaluate.stage import Evaluation, record_promotion


def candidate(tmp_path, name: str):
    """A folder that looks like a trained candidate (the registry reads only candidate.json)."""
    folder = tmp_path / "candidates" / name
    folder.mkdir(parents=True)
    write_candidate_card(folder, kind="tfidf_logreg", name=name, parameters=10)
    return folder


@pytest.fixture
def registry(any_store, tmp_path):
    return Registry(any_store, tmp_path / "registry.json")


def exported(tmp_path) -> dict:
    return json.loads((tmp_path / "registry.json").read_text())


def test_a_candidate_in_shadow_serves_nothing_and_is_shown(registry, tmp_path):
    entry = registry.shadow(
        candidate(tmp_path, "b"), reason="passes the offline rule", metrics={"accuracy": 0.9}, cycle_id="c-2"
    )
    assert (entry.event, entry.model_name, entry.metrics, entry.cycle_id) == (
        "shadow",
        "b",
        {"accuracy": 0.9},
        "c-2",
    )
    state = registry.state()
    assert state.shadow == entry == registry.in_shadow()
    assert state.current is None and state.serving == PRODUCTION
    # nothing was ever promoted or rolled back: a configured default model keeps serving
    assert state.last is None and not state.rolled_back_to_production
    assert "nothing has been promoted yet" in state.message() and "in shadow: b" in state.message()
    snapshot = exported(tmp_path)
    assert snapshot == registry.snapshot()
    assert snapshot["shadow"]["model_name"] == "b" and snapshot["current"] is None
    assert snapshot["serving"]["shadow"] == "b" and snapshot["stack"] == []


def test_promoting_the_shadowed_artifact_ends_the_shadow(registry, tmp_path):
    a, b = candidate(tmp_path, "a"), candidate(tmp_path, "b")
    registry.promote(a, reason="first")
    registry.shadow(b, reason="a better one")
    assert registry.current().model_name == "a" and registry.in_shadow().model_name == "b"
    promoted = registry.promote(b, reason="held in its shadow week", metrics={"shadow_agreement": 0.97})
    state = registry.state()
    assert state.current == promoted and state.shadow is None
    assert [e.model_name for e in state.stack] == ["a", "b"]
    assert exported(tmp_path)["shadow"] is None
    assert registry.rollback("b fell below the gate").model_name == "a"  # the stack ignores shadow events


def test_promoting_another_artifact_or_rolling_back_keeps_the_shadow(registry, tmp_path):
    a, b, c = (candidate(tmp_path, n) for n in "abc")
    registry.promote(a, reason="first")
    shadow = registry.shadow(c, reason="in shadow")
    registry.promote(b, reason="promoted by hand meanwhile")
    assert registry.in_shadow() == shadow
    registry.rollback("undo b")
    assert registry.in_shadow() == shadow and registry.current().model_name == "a"
    registry.rollback("undo a")
    state = registry.state()
    assert state.on_production and state.rolled_back_to_production and state.shadow == shadow


def test_reject_ends_the_shadow_without_promoting(registry, tmp_path):
    a = candidate(tmp_path, "a")
    registry.promote(a, reason="first")
    shadow = registry.shadow(candidate(tmp_path, "b"), reason="try b", cycle_id="c-3")
    rejected = registry.reject("agreement 81% in its shadow week", metrics={"agreement": 0.81})
    assert (rejected.event, rejected.model_name, rejected.undoes_seq) == ("reject", "b", shadow.seq)
    assert rejected.metrics == {"agreement": 0.81} and rejected.cycle_id == "c-3"
    state = registry.state()
    assert state.shadow is None and state.current.model_name == "a"
    assert "promoted model a is serving" in state.message() and "in shadow" not in state.message()
    assert [e["event"] for e in exported(tmp_path)["history"]] == ["promote", "shadow", "reject"]
    with pytest.raises(RegistryError, match="no candidate is in shadow"):
        registry.reject("again")
    with pytest.raises(ValueError, match="reason"):
        registry.shadow(candidate(tmp_path, "c"), reason="")
    with pytest.raises(ValueError, match="reason"):
        registry.reject(" ")
    assert len(registry.history()) == 3
    # a rejected candidate can go in shadow again (a later cycle retrains it in the same folder)
    assert registry.shadow(tmp_path / "candidates" / "b", reason="retrained").seq > rejected.seq


def test_a_newer_shadow_replaces_the_older_and_rerunning_one_is_a_no_op(registry, tmp_path):
    a, b, c = (candidate(tmp_path, n) for n in "abc")
    current = registry.promote(a, reason="first")
    first = registry.shadow(b, reason="b")
    assert registry.shadow(b, reason="the same cycle again") == first
    assert registry.shadow(a, reason="the one serving") == current  # nothing to shadow
    second = registry.shadow(c, reason="c is newer")
    assert registry.in_shadow() == second
    assert [e.event for e in registry.history()] == ["promote", "shadow", "shadow"]
    registry.promote(b, reason="b, promoted by hand")  # not the candidate in shadow: c stays
    assert registry.in_shadow() == second


def test_shadow_refuses_a_folder_that_is_not_a_trained_candidate(registry, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"candidate\.json"):
        registry.shadow(tmp_path / "empty", reason="r")
    assert registry.history() == []


def test_rollback_steps_over_shadow_and_reject_events(registry, tmp_path):
    a, b, c = (candidate(tmp_path, n) for n in "abc")
    first = registry.promote(a, reason="a")
    registry.shadow(c, reason="c")
    registry.reject("c failed")
    second = registry.promote(b, reason="b")
    registry.shadow(c, reason="c again")
    event = registry.rollback("b fell below the gate")
    assert (event.event, event.undoes_seq, event.restores_seq) == ("rollback", second.seq, first.seq)
    state = registry.state()
    assert state.last == event and state.undone == second
    assert "restored" in state.message() and "in shadow: c" in state.message()
    assert registry.rollback("a too").event == PRODUCTION
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()


# --- the eval stage: promote_via ------------------------------------------------------------------


def _evaluation(folder):
    row = {"name": "s", "kind": "single", "accuracy": 0.94, "cost_per_1k": 0.01, "n": 100}
    decision = {"promoted": "s", "reason": "cheapest eligible", "eligible": ["s"], "rejected": {}}
    return Evaluation(pd.DataFrame(), {"s": folder}, [{"name": "baseline"}, row], {}, decision, None)


def test_record_promotion_via_shadow_puts_the_candidate_in_shadow(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    run = RunDir(tmp_path / "runs" / "c-1")
    evaluation = _evaluation(candidate(tmp_path, "s"))
    entry = record_promotion(run, store, evaluation, promote_via="shadow")
    registry = Registry(store, default_export_path(run.runs_root, "default"))
    assert entry.event == "shadow" and registry.in_shadow() == entry and registry.current() is None
    assert entry.metrics == {"accuracy": 0.94, "cost_per_1k": 0.01, "n": 100} and entry.cycle_id == "c-1"
    assert evaluation.decision["registry_event"] == "shadow"
    assert "s goes to its shadow week" in evaluation.decision_text(entry)
    with pytest.raises(ValueError, match="promote_via"):
        record_promotion(run, store, evaluation, promote_via="nowhere")


def test_record_promotion_follows_the_runs_eval_promote_via(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    run = RunDir(tmp_path / "runs" / "c-1")
    run.path.mkdir(parents=True)
    config = load_config(REPO_ROOT / "configs" / "demo.yaml").model_dump(mode="json")
    config["eval"]["promote_via"] = "shadow"
    run.config_path.write_text(yaml.safe_dump(config))
    assert load_config(run.config_path).eval.promote_via == "shadow"
    assert record_promotion(run, store, _evaluation(candidate(tmp_path, "s"))).event == "shadow"

    other = RunDir(tmp_path / "runs" / "c-2")  # no config in the run directory: promoted at once
    evaluation = _evaluation(candidate(tmp_path, "t"))
    assert record_promotion(other, store, evaluation).event == "promote"
    assert "next_step" not in evaluation.decision and evaluation.decision["registry_event"] == "promote"
