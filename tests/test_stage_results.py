"""The typed results of collect and triage: the JSON they write keeps the keys and values the notebooks wrote
as plain dicts, and later stages read them back typed (no notebooks run)."""

import json

import pandas as pd
import pytest

from flywheel.core.config import REPO_ROOT
from flywheel.core.results import CollectResult, GroundTruthRef, TriageResult, read_result, write_result
from flywheel.core.runs import create_run

TEST_CONFIG = REPO_ROOT / "configs" / "test.yaml"
REVIEW = {"mode": "wait", "simulated": False, "progress": {"total": 4, "pending": 4}, "agreement": {}}


@pytest.fixture
def run(tmp_path):
    return create_run(TEST_CONFIG, runs_root=tmp_path / "runs")


def test_a_paused_triage_records_only_the_review(run):
    write_result(run, TriageResult(reviewed=0, review=REVIEW, awaiting_review=True))
    written = json.loads(run.results_path("02_triage").read_text())
    assert set(written) == {"stage", "recorded_at", "peak_rss_mb", "reviewed", "review", "awaiting_review"}
    assert written["stage"] == "02_triage" and written["peak_rss_mb"] > 0
    back = read_result(run, TriageResult)
    assert back.awaiting_review and back.ground_truth is None and back.review.progress["pending"] == 4


def test_the_ground_truth_reference_reads_its_splits(run, tmp_path):
    folder = tmp_path / "gt" / "abc123"
    folder.mkdir(parents=True)
    train = pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"], "label": ["it_help", "facilities"]})
    train.to_parquet(folder / "train.parquet")
    counts = dict(interactions=5, labelled=4, audited=2, duplicates_removed=1, exact_duplicates_removed=1)
    ref = GroundTruthRef(
        version="abc123", folder=folder, near_duplicates_removed=0, train=2, validation=1, test=1, **counts
    )
    judges = [{"judge": "embedding", "precision": {"value": None, "ci_low": None}}]
    result = TriageResult(
        reviewed=3,
        review={**REVIEW, "mode": "simulate", "simulated": True},
        awaiting_review=False,
        causes={"routing": 2, "retrieval": 1},
        judges=judges,
        ground_truth=ref,
    )
    write_result(run, result)
    written = json.loads(run.results_path("02_triage").read_text())
    # the ground truth stays one flat object: version, folder and counts side by side, as before
    assert written["ground_truth"] == {
        "version": "abc123",
        "folder": str(folder),
        **ref.model_dump(exclude={"version", "folder"}),
    }
    assert written["judges"] == judges
    back = read_result(run, TriageResult)
    pd.testing.assert_frame_equal(back.ground_truth.load_split("train"), train)


def test_a_results_file_with_an_unknown_key_fails_where_it_is_read(run):
    write_result(run, TriageResult(reviewed=0, review=REVIEW, awaiting_review=True))
    path = run.results_path("02_triage")
    path.write_text(json.dumps({**json.loads(path.read_text()), "groundtruth": {}}))
    with pytest.raises(ValueError, match="groundtruth"):
        read_result(run, TriageResult)


def test_the_collect_result_keeps_the_status_it_was_given(run):
    status = {"should_run": True, "reasons": ["120 new"], "new_feedback": 120, "min_new_feedback": 100}
    result = CollectResult(
        ingest={"read": 3, "accepted": 2, "duplicates": 0, "quarantined": 1},
        interactions_in_store=2,
        quarantined_in_store=1,
        satisfied_share=0.5,
        weeks=1,
        implicit_signals={"retry": 1},
        drift_flagged_windows=["2026-09-28/2026-10-04"],
        status_before_cycle=status,
    )
    write_result(run, result)
    written = json.loads(run.results_path("01_collect").read_text())
    assert written["status_before_cycle"] == {"should_run": True, "reasons": ["120 new"], "new_feedback": 120}
    assert read_result(run, CollectResult) == result.model_copy(
        update={k: written[k] for k in ("recorded_at", "peak_rss_mb")}
    )
