"""The whole flywheel cycle through papermill on configs/test.yaml: real notebooks, real models."""

import json
import re
import subprocess
import sys
from pathlib import Path

from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.runs import STAGES


def test_summary_has_baseline_candidates_and_a_decision(cycle_run):
    _, summary, _ = cycle_run
    baseline = summary["baseline"]
    # The production model routes ~96%; on the audit's labels (three simulated experts) it is in this band.
    assert 0.85 <= baseline["accuracy"] <= 1.0
    assert baseline["ci_low"] < baseline["accuracy"] < baseline["ci_high"]
    names = {c["name"] for c in summary["candidates"]}
    assert names == {c.name for c in load_config(REPO_ROOT / "configs" / "test.yaml").candidates}
    for candidate in summary["candidates"]:
        assert candidate["n"] == baseline["n"]  # paired: the same test items
        # paired: the accuracy gap is exactly what the discordant items say, and each tiny candidate is below
        # the production model by more than the margin or significantly (so the rule promotes none, below)
        gap = candidate["only_candidate_correct"] - candidate["only_baseline_correct"]
        assert candidate["correct"] - baseline["correct"] == gap < 0
        assert candidate["mcnemar_p"] < 0.05 or candidate["accuracy"] < baseline["accuracy"] - 0.02
        assert candidate["cost_per_1k"] < baseline["cost_per_1k"] / 10
        assert candidate["p50_ms"] < baseline["p50_ms"]
    tfidf = next(c for c in summary["candidates"] if c["name"] == "tfidf-logreg")
    assert 0.5 <= tfidf["accuracy"] <= 0.95  # the demo task is not trivial for a bag of words
    assert not any(c["promoted"] for c in summary["candidates"])
    cascades = {c["name"] for c in summary["cascades"]}
    assert cascades <= {f"{name}+defer" for name in names}
    decision, promoted = summary["promotion"], summary["promoted"]
    rejected, eligible = set(decision["rejected"]), set(decision["eligible"])
    assert rejected | eligible == names | cascades and not rejected & eligible  # each judged, with its reason
    assert names <= rejected  # no tiny single student comes within the margin
    if promoted is None:
        assert not eligible and "no candidate meets the promotion rule" in decision["reason"]
    else:  # a cascade can (its threshold chosen on validation): the cheapest eligible one
        assert promoted == decision["eligible"][0]
        winner = next(c for c in summary["cascades"] if c["name"] == promoted)
        assert winner["accuracy"] >= baseline["accuracy"] - 0.02
        assert winner["cost_per_1k"] == min(
            c["cost_per_1k"] for c in summary["cascades"] if c["name"] in eligible
        )
    students = {c["name"]: c for c in summary["candidates"]}
    for cascade in summary["cascades"]:  # deferred items take the production router's decision
        assert 0 < cascade["deferral_share"] < 1 and cascade["n"] == baseline["n"]
        assert cascade["agreement"] >= students[cascade["student"]]["agreement"]


def test_run_directory_holds_notebooks_manifest_and_plots(cycle_run):
    _, _, run_dir = cycle_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [manifest["stages"][s]["status"] for s in STAGES] == ["done"] * 4
    assert any(path.endswith("logs.jsonl") for path in manifest["inputs"])
    for stage in STAGES:
        assert (run_dir / "notebooks" / f"{stage}.ipynb").is_file()
    for plot in [
        "weekly_traffic",
        "review_causes",
        "accuracy_vs_cost",
        "accuracy_vs_latency",
        "confusion_baseline",
    ]:
        assert (run_dir / "plots" / f"{plot}.png").stat().st_size > 5000
    report = (run_dir / "report.html").read_text()
    assert "minilm-l6-full" in report and "import " not in report  # the table, without the code
    ingest = json.loads((run_dir / "results" / "01_collect.json").read_text())["ingest"]
    assert ingest["quarantined"] > 0 and ingest["duplicates"] > 0
    assert ingest["read"] == ingest["accepted"] + ingest["duplicates"] + ingest["quarantined"]


def test_secrets_and_raw_pii_stay_out_of_training_data(cycle_run):
    import pandas as pd

    _, _, run_dir = cycle_run
    (folder,) = (run_dir / "artifacts" / "ground_truth").iterdir()
    splits = [pd.read_parquet(folder / f"{split}.parquet") for split in ("train", "validation", "test")]
    texts = pd.concat(splits)["text"]
    assert not texts.str.contains(r"[\w.+-]+@[\w-]+\.\w+", regex=True).any()


def test_resume_of_a_complete_cycle_redoes_nothing(cycle_run):
    _, _, run_dir = cycle_run
    result = subprocess.run(
        [sys.executable, "-m", "flywheel.cli", "cycle", "--resume", str(run_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("done earlier, skipped") == 4
    assert result.stdout.strip().splitlines()[-1] == str(run_dir)


def test_run_directory_holds_no_raw_logs(cycle_run):
    """The demo's raw logs (planted PII) and hidden truth stay beside the runs: a path and a sha256."""
    from flywheel.core.runs import file_sha256

    runs, _, run_dir = cycle_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    ((logs, digest),) = manifest["inputs"].items()
    logs = Path(logs)
    assert logs.is_relative_to(runs.resolve()) and not logs.is_relative_to(run_dir)
    assert file_sha256(logs) == digest
    emails = set(re.findall(rb"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}", logs.read_bytes()))
    assert emails, "the demo plants e-mail addresses"
    for path in (p for p in run_dir.rglob("*") if p.is_file()):
        assert path.suffix != ".jsonl", path
        content = path.read_bytes()
        assert not [e for e in emails if e in content], f"a raw e-mail address in {path}"
