"""Where a cycle's input comes from and what its run directory keeps of it (fast: no notebooks run).

Relative `source.paths` are taken from the folder the cycle was started in, even though the collect notebook
runs in notebooks/01_collect/; raw logs (the demo's too, with its planted PII) stay out of run directories,
which record their paths and sha256 instead."""

import hashlib
import json

import pytest
import yaml
from conftest import good_record

from flywheel.core.config import REPO_ROOT, load_config, read_config_mapping
from flywheel.core.log_sources import log_source, registered_kinds
from flywheel.core.runs import RunDir, create_run

TEST_CONFIG = REPO_ROOT / "configs" / "test.yaml"
COLLECT_FOLDER = REPO_ROOT / "notebooks" / "01_collect"  # where papermill runs the collect notebook


def config_with_source(path, source: dict, **changes):
    raw = read_config_mapping(TEST_CONFIG)  # test.yaml extends demo.yaml
    raw["source"] = source
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw))
    return path


def test_relative_source_paths_are_taken_from_where_the_cycle_starts(tmp_path, monkeypatch, write_jsonl):
    (tmp_path / "logs").mkdir()
    logs = write_jsonl("logs/a.jsonl", [good_record(1), good_record(2)])
    # The README's example, verbatim.
    config = config_with_source(tmp_path / "mine.yaml", yaml.safe_load("{kind: files, paths: [logs/]}"))
    monkeypatch.chdir(tmp_path)
    run = create_run("mine.yaml", runs_root="runs")
    source = run.manifest()["source"]
    assert source == {"kind": "files", "base": str(tmp_path.resolve()), "paths": [str(logs.parent.resolve())]}

    monkeypatch.chdir(COLLECT_FOLDER)
    files = log_source("files").log_files(load_config(run.config_path), RunDir(run.path))
    assert files == [logs.resolve()]
    assert config.read_text() == run.config_path.read_text()  # the copy is the user's file as written


def test_a_missing_source_path_fails_before_a_run_directory_is_made(tmp_path, monkeypatch):
    config_with_source(tmp_path / "mine.yaml", {"kind": "files", "paths": ["logs/", "/no/such/file.jsonl"]})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        create_run("mine.yaml", runs_root="runs")
    message = str(err.value)
    assert f"'logs/' ({tmp_path.resolve() / 'logs'})" in message and "/no/such/file.jsonl" in message
    assert "relative paths are taken from the folder the cycle was started in" in message
    assert not (tmp_path / "runs").exists()


def test_the_demo_world_stays_out_of_the_run_directory(tmp_path):
    config = config_with_source(
        tmp_path / "tiny.yaml", {"kind": "demo", "n_interactions": 60, "weeks": 2}, name="tiny"
    )
    run = create_run(config, runs_root=tmp_path / "runs")
    demo = log_source("demo")
    (logs,) = demo.log_files(load_config(run.config_path), run)
    truth = demo.hidden_truth(run)
    for path in (logs, truth):
        assert path.is_file() and not path.is_relative_to(run.path)
    assert not [p for p in run.path.rglob("*") if p.suffix == ".jsonl"]  # no raw logs, no truth in the run
    manifest = run.manifest()
    assert manifest["source"]["hidden_truth"] == {str(truth): hashlib.sha256(truth.read_bytes()).hexdigest()}

    # A second cycle of the same config reuses the world; the truth holds ids and labels, no text.
    again = create_run(config, runs_root=tmp_path / "runs")
    assert demo.log_files(load_config(again.config_path), again) == [logs]
    row = json.loads(truth.read_text().splitlines()[0])
    assert set(row) == {"id", "true_expert", "cause", "satisfied", "confuser", "template"}


def test_review_counts_add_up_over_attempts(tmp_path):
    """A resumed triage pushes nothing new: the manifest keeps what the paused attempt pushed."""
    run = create_run(TEST_CONFIG, runs_root=tmp_path / "runs")
    paused = {"push": {"records": 268, "records_per_s": 40.0}, "pull": {"answers_added": 0}}
    run.record_review({"mode": "wait", **paused})
    review = run.record_review(
        {"mode": "wait", "push": {"records": 0, "records_per_s": None}, "pull": {"answers_added": 268}}
    )
    assert review["push"]["records"] == 268 and review["push"]["records_per_s"] == 40.0
    assert [a["records"] for a in review["push"]["attempts"]] == [268, 0]
    assert review["pull"]["answers_added"] == 268
    assert run.manifest()["review"] == review


def test_log_sources_are_found_by_their_entry_point_names(tmp_path):
    assert {"demo", "files"} <= set(registered_kinds())
    with pytest.raises(LookupError, match=r"no log source 'kafka'.*registered: demo, files"):
        log_source("kafka")
    # Real logs know no truth: no hidden labels to score judges, no simulated experts.
    run = create_run(TEST_CONFIG, runs_root=tmp_path / "runs")
    files = log_source("files")
    assert files.hidden_truth(run) is None
    assert files.simulated_panel(load_config(run.config_path), run) is None


def test_the_demo_source_provides_the_simulated_panel_from_its_hidden_truth(tmp_path):
    config = config_with_source(
        tmp_path / "tiny.yaml", {"kind": "demo", "n_interactions": 60, "weeks": 2}, name="tiny"
    )
    run = create_run(config, runs_root=tmp_path / "runs")
    demo, cfg = log_source("demo"), load_config(run.config_path)
    demo.log_files(cfg, run)
    panel = demo.simulated_panel(cfg, run)
    assert panel.reviewers == [f"simulated-expert-{i + 1}" for i in range(cfg.review.experts_per_record)]
    truth = [json.loads(line) for line in demo.hidden_truth(run).read_text().splitlines()]
    answers = panel.answer([row["id"] for row in truth])
    assert len(answers) == len(truth) * len(panel.reviewers)
