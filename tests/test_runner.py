"""The cycle runner with real papermill execution, on small stand-in notebooks (fast)."""

import json
import os

import nbformat
import pytest

from flywheel import cycle
from flywheel.core.config import config_text
from flywheel.core.runs import RunDir

CONFIG = cycle.REPO_ROOT / "configs" / "test.yaml"


def make_notebook(path, body: str):
    book = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('run_dir = ""\nconfig_path = ""')
    params.metadata["tags"] = ["parameters"]
    book.cells = [params, nbformat.v4.new_code_cell(body)]
    book.metadata["kernelspec"] = {"name": "flywheel", "display_name": "flywheel", "language": "python"}
    nbformat.write(book, path)
    return path


@pytest.fixture
def stand_in_stages(tmp_path, monkeypatch, jupyter_kernel):
    """Stages that append their name to a log file; the third fails while a flag file exists."""
    log, flag = tmp_path / "calls.log", tmp_path / "fail.flag"
    notebooks = {}
    for stage in cycle.NOTEBOOKS:
        body = f"open({str(log)!r}, 'a').write({stage!r} + '\\n')\n"
        if stage == "03_finetune":
            body += f"import os\nif os.path.exists({str(flag)!r}):\n    raise ValueError('boom')\n"
        notebooks[stage] = str(make_notebook(tmp_path / f"{stage}.ipynb", body))
    monkeypatch.setattr(cycle, "NOTEBOOKS", notebooks)
    return log, flag


def calls(log):
    return log.read_text().split()


def test_failure_stops_the_cycle_and_resume_continues(tmp_path, stand_in_stages):
    log, flag = stand_in_stages
    flag.touch()
    with pytest.raises(cycle.StageFailed, match=r"03_finetune.*ValueError: boom"):
        cycle.run_cycle(CONFIG, runs_root=tmp_path / "runs", log=lambda _: None)
    (run_path,) = (p for p in (tmp_path / "runs").iterdir() if (p / "manifest.json").is_file())
    run = RunDir(run_path)
    assert [run.stage_status(s) for s in cycle.NOTEBOOKS] == ["done", "done", "failed", "pending"]
    assert run.manifest()["status"] == "failed"
    assert calls(log) == ["01_collect", "02_triage", "03_finetune"]

    flag.unlink()
    cycle.run_cycle(resume=run_path, log=lambda _: None)
    assert calls(log) == ["01_collect", "02_triage", "03_finetune", "03_finetune", "04_eval"]
    manifest = run.manifest()
    assert manifest["status"] == "complete"
    assert all(s["status"] == "done" and s["seconds"] > 0 for s in manifest["stages"].values())
    assert (run_path / "notebooks" / "04_eval.ipynb").is_file()


def test_manifest_records_provenance(tmp_path, stand_in_stages):
    run = cycle.run_cycle(CONFIG, runs_root=tmp_path / "runs", log=lambda _: None)
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["config"]["name"] == "test"
    assert manifest["seed"] == 7
    assert manifest["packages"]["transformers"] == "5.24.0"
    assert manifest["hardware"]["cpu_count"] == os.cpu_count()
    assert (run.path / "config.yaml").read_text() == config_text(CONFIG)  # the overlay resolved


def test_bad_config_fails_before_anything_runs(tmp_path, stand_in_stages):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nexperts: {a: b}\n")
    with pytest.raises(ValueError, match="experts"):
        cycle.run_cycle(bad, runs_root=tmp_path / "runs", log=lambda _: None)
    assert not (tmp_path / "runs").exists()


def test_missing_kernel_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="make setup"):
        cycle.run_cycle(CONFIG, runs_root=tmp_path / "runs", kernel_name="no-such-kernel", log=lambda _: None)


def test_every_attempt_is_kept(tmp_path, stand_in_stages):
    """A resume keeps the failed attempt: its seconds, error and executed notebook (with the traceback)."""
    _, flag = stand_in_stages
    flag.touch()
    with pytest.raises(cycle.StageFailed):
        cycle.run_cycle(CONFIG, runs_root=tmp_path / "runs", log=lambda _: None)
    (run_path,) = (p for p in (tmp_path / "runs").iterdir() if (p / "manifest.json").is_file())
    flag.unlink()
    cycle.run_cycle(resume=run_path, log=lambda _: None)

    stage = RunDir(run_path).manifest()["stages"]["03_finetune"]
    first, second = stage["attempts"]
    assert first["status"] == "failed" and first["error"] == "ValueError: boom" and first["seconds"] > 0
    assert second["status"] == "done" and second["notebook"] == "notebooks/03_finetune.ipynb"
    assert stage["seconds"] == pytest.approx(first["seconds"] + second["seconds"], abs=0.11)
    kept = nbformat.read(run_path / first["notebook"], as_version=4)
    assert first["notebook"] == "notebooks/03_finetune.attempt-1.ipynb"
    assert any(out.get("ename") == "ValueError" for cell in kept.cells for out in cell.get("outputs", []))
    assert [len(s["attempts"]) for s in RunDir(run_path).manifest()["stages"].values()] == [1, 1, 2, 1]
