"""A new user's whole cycle through the `flywheel` command: their own logs in `logs/` (the README's
`source: {kind: files, paths: [logs/]}`, verbatim, run from that folder), real experts (`review.mode: wait`)
answering in the embedded Argilla server, a resume before they have answered and one after. (This is
also the test of `review.mode: wait` in a real cycle: the paused triage stage has no ground truth yet.)

Checks what the user sees and what the run directory keeps: relative paths resolved from where the cycle
started; every attempt of the paused stage kept and the push count not reset by the resume; a clear line
saying how many records are answered and where; the server the cycle started stopped at the end; no raw log
line, raw e-mail address or API key in the run directory."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flywheel.core.config import REPO_ROOT, read_config_mapping

AWAITING_REVIEW_EXIT = 3  # documented: `flywheel cycle` paused for expert review
EMAIL = re.compile(rb"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}")


def flywheel(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flywheel.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )


def explain(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture
def user_folder(tmp_path, monkeypatch, jupyter_kernel, redis_server):
    """A folder holding logs/ (demo logs standing in for the user's), mine.yaml and, apart, the demo's
    hidden truth for the experts' answers."""
    monkeypatch.setenv("FLYWHEEL_ARGILLA_HOME", str(tmp_path / "argilla"))  # the subprocesses inherit it
    for name in ("ARGILLA_API_URL", "FLYWHEEL_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    test_config = str(REPO_ROOT / "configs" / "test.yaml")
    made = flywheel("demo-data", "--out", "world", "--config", test_config, "--n", "120", cwd=tmp_path)
    assert made.returncode == 0, explain(made)
    (tmp_path / "logs").mkdir()
    shutil.move(tmp_path / "world" / "logs.jsonl", tmp_path / "logs" / "logs.jsonl")
    raw = read_config_mapping(test_config)  # test.yaml extends demo.yaml
    raw["source"] = yaml.safe_load("{kind: files, paths: [logs/]}")
    raw["review"]["mode"] = "wait"
    raw["candidates"] = [c for c in raw["candidates"] if c["name"] == "tfidf-logreg"]  # keeps it quick
    raw["audit"]["size"] = 40  # of 120 interactions: the rest train
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    yield tmp_path
    from flywheel.argilla import server as argilla_server

    argilla_server.down()


def test_own_logs_pause_for_experts_resume_and_clean_up(user_folder):
    from flywheel.argilla import server as argilla_server
    from flywheel.core.context import open_stage
    from flywheel.core.runs import RunDir, file_sha256
    from flywheel.demo.panel import SimulatedPanel
    from flywheel.triage.review import open_review

    logs = (user_folder / "logs" / "logs.jsonl").resolve()

    # 1. The cycle pushes the unhappy interactions to Argilla and pauses: exit 3, with where to answer.
    paused = flywheel("cycle", "--config", "mine.yaml", "--runs-dir", "runs", cwd=user_folder)
    assert paused.returncode == AWAITING_REVIEW_EXIT, explain(paused)
    run = RunDir(paused.stdout.strip().splitlines()[-1])
    manifest = run.manifest()
    assert manifest["source"]["paths"] == [str(logs.parent)]
    assert manifest["inputs"] == {str(logs): file_sha256(logs)}
    assert manifest["stages"]["02_triage"]["status"] == "awaiting_review"
    paused_result = run.results("02_triage")  # later cells skipped their work: no ground truth yet
    assert paused_result["awaiting_review"] is True and "ground_truth" not in paused_result
    pushed = manifest["review"]["push"]["records"]
    total = manifest["review"]["progress"]["total"]
    assert pushed == total > 0
    dataset, url = manifest["review"]["argilla"]["dataset"], manifest["review"]["argilla"]["url"]
    assert f"0 of {total} records answered in Argilla at {url}, dataset {dataset!r}" in paused.stdout
    assert argilla_server.is_running(), "the server stays up for the experts"
    assert manifest["services"]["argilla"]["started_by_cycle"] is True

    # 2. A resume before anyone answered says so, and exits 3 again without re-running the stage.
    early = flywheel("cycle", "--resume", str(run.path), cwd=user_folder)
    assert early.returncode == AWAITING_REVIEW_EXIT, explain(early)
    assert f"0 of {total} records answered in Argilla at {url}, dataset {dataset!r}" in early.stdout
    assert len(run.manifest()["stages"]["02_triage"]["attempts"]) == 1

    # 3. The experts answer in Argilla (here through the API, as annotator users): the triage dataset, and
    # the audit's, where three experts answer each record.
    stage = open_stage(run.path)
    session = open_review(stage.config, stage.store, log=lambda _: None)
    panel = SimulatedPanel(user_folder / "world" / "hidden_truth.jsonl", stage.experts, 0.0, seed=1)
    assert panel.answer_in_argilla(session)["submitted"] == total
    audit_session = open_review(stage.config, stage.store, log=lambda _: None, task="audit")
    audit_panel = SimulatedPanel(
        user_folder / "world" / "hidden_truth.jsonl", stage.experts, 0.0, seed=1, size=3
    )
    assert audit_panel.answer_in_argilla(audit_session)["submitted"] == 3 * 40

    # 4. The resume finishes the cycle and stops the server the paused cycle started.
    done = flywheel("cycle", "--resume", str(run.path), cwd=user_folder)
    assert done.returncode == 0, explain(done)
    manifest = run.manifest()
    assert manifest["status"] == "complete"
    assert "stopping the embedded Argilla server that this cycle started" in done.stdout
    assert not argilla_server.is_running()
    assert manifest["services"]["argilla"]["stopped_at"]

    # Every attempt kept: the pause's seconds and notebook, and its push count.
    first, second = manifest["stages"]["02_triage"]["attempts"]
    assert first["status"] == "awaiting_review" and first["seconds"] > 0
    assert first["notebook"] == "notebooks/02_triage.attempt-1.ipynb"
    assert (run.path / first["notebook"]).is_file()
    assert (run.path / "results" / "02_triage.attempt-1.json").is_file()
    assert second["status"] == "done"
    assert manifest["review"]["push"]["records"] == pushed
    assert [a["records"] for a in manifest["review"]["push"]["attempts"]] == [pushed, 0]
    assert manifest["review"]["pull"]["answers_added"] == total
    assert manifest["review"]["mode"] == "wait" and manifest["review"]["simulated"] is False
    assert set(stage.store.reviews_frame()["origin"]) == {"argilla"}
    assert manifest["audit"]["progress"]["completed"] == manifest["audit"]["progress"]["total"] == 40
    triage = run.results("02_triage")
    assert triage["awaiting_review"] is False and triage["ground_truth"]["train"] > 0
    assert triage["ground_truth"]["test"] > 0 and triage["ground_truth"]["validation"] > 0

    # Nothing raw or secret in the run directory, which is meant to be shared.
    raw_lines = {line for line in logs.read_bytes().splitlines() if len(line) > 40}
    emails = set(EMAIL.findall(logs.read_bytes()))
    assert emails, "the demo logs plant e-mail addresses"
    api_key = json.loads((user_folder / "argilla" / "credentials.json").read_text())["api_key"].encode()
    for path in (p for p in run.path.rglob("*") if p.is_file()):
        content = path.read_bytes()
        assert file_sha256(path) != file_sha256(logs), path
        assert not [line for line in raw_lines if line in content], f"a raw log line in {path}"
        assert not [e for e in emails if e in content], f"a raw e-mail address in {path}"
        assert api_key not in content, f"the Argilla API key in {path}"
