"""The finetune and eval stages hand each other typed results whose JSON is what the notebooks recorded
before: a tiny run with a real TF-IDF candidate, and results files as an earlier cycle wrote them."""

import json
import math

import pandas as pd
import pytest
from conftest import ROUTING_PHRASES

from flywheel.core.config import load_config
from flywheel.core.results import (
    EvalResult,
    FinetuneResult,
    GroundTruthRef,
    TriageResult,
    read_result,
    write_result,
)
from flywheel.core.runs import RunDir
from flywheel.evaluate.stage import evaluate_all
from flywheel.finetune.stage import run_finetune, training_curves, training_plan

EXPERTS = list(ROUTING_PHRASES)
HEADLINE_KEYS = {
    "model", "accuracy", "ci95", "vs_baseline_points", "mcnemar_p", "p50_ms", "ttft_p50_ms",
    "cost_per_1k_usd", "parameters", "promoted", "agreement", "deferral_share", "hidden_truth_accuracy",
    "unseen_template_accuracy", "unseen_template_ci95", "unseen_template_n",
}  # fmt: skip
ADDED_HEADLINE = dict.fromkeys(HEADLINE_KEYS - {  # added since LEGACY_EVAL: None there
    "model", "accuracy", "ci95", "vs_baseline_points", "mcnemar_p", "p50_ms", "ttft_p50_ms",
    "cost_per_1k_usd", "parameters", "promoted",
})  # fmt: skip


def split(suffixes: list[str], prefix: str, label_source: str) -> pd.DataFrame:
    rows = [
        (f"{phrase} {s}", expert) for expert, ps in ROUTING_PHRASES.items() for phrase in ps for s in suffixes
    ]
    frame = pd.DataFrame(rows, columns=["text", "label"])
    return frame.assign(
        id=[f"{prefix}-{i}" for i in range(len(frame))],
        routed_expert=frame["label"],
        label_source=label_source,
        weight=1.0,
    )


@pytest.fixture
def triaged_run(tmp_path):
    """A run whose triage stage recorded a ground truth (train, validation and test Parquet files)."""
    folder = tmp_path / "ground_truth"
    folder.mkdir()
    train = split(["please", "asap"], "tr", "expert")
    validation, test = split(["!"], "va", "audit"), split(["?"], "te", "audit")
    train.to_parquet(folder / "train.parquet")
    validation.to_parquet(folder / "validation.parquet")
    test.to_parquet(folder / "test.parquet")
    run = RunDir(tmp_path / "run")
    total = len(train) + len(validation) + len(test)
    ground_truth = GroundTruthRef(
        version="v1", folder=folder, interactions=total, labelled=total,
        audited=len(validation) + len(test), duplicates_removed=0, exact_duplicates_removed=0,
        near_duplicates_removed=0, train=len(train), validation=len(validation), test=len(test),
    )  # fmt: skip
    review = {"mode": "simulated", "simulated": True, "progress": {}, "agreement": {}}
    write_result(
        run,
        TriageResult(reviewed=0, review=review, awaiting_review=False, judges=[], ground_truth=ground_truth),
    )
    return run, test, validation


def test_finetune_result_feeds_the_eval_stage(triaged_run):
    run, test, validation = triaged_run
    config = load_config("configs/test.yaml").model_copy(update={"experts": dict.fromkeys(EXPERTS, "")})
    assert training_plan(run, config, ["tfidf-logreg"], {}).splitlines() == [
        "ground truth v1",
        "  tfidf-logreg: tfidf_logreg  full",
    ]
    finetune = run_finetune(run, config, ["tfidf-logreg"], {})
    write_result(run, finetune)
    recorded = json.loads(run.results_path("03_finetune").read_text())
    assert recorded["candidate_dirs"] == {"tfidf-logreg": str(run.artifact("candidates", "tfidf-logreg"))}
    assert recorded["candidates"]["tfidf-logreg"]["train_examples"] == 2 * len(test)
    assert training_curves(finetune) == []  # TF-IDF has no loss curve

    candidate_dirs = read_result(run, FinetuneResult).candidate_dirs
    logs = test.assign(model="big", latency_ms=900.0, tokens_in=200, tokens_out=3)
    evaluation = evaluate_all(config, test, logs, candidate_dirs, validation=validation)
    write_result(run, evaluation.result())
    table = json.loads(run.results_path("04_eval").read_text())["table"]
    assert [set(row) for row in table] == [HEADLINE_KEYS, HEADLINE_KEYS]
    assert [row["model"] for row in table] == ["baseline", "tfidf-logreg"]
    # the student alone is as good as production on validation here: a cascade would defer nothing
    assert "no deferral needed" in evaluation.cascades_skipped["tfidf-logreg"]
    assert "hidden_truth_accuracy" not in evaluation.table  # no hidden truth given: no such column
    assert evaluation.rows[1]["agreement"] == evaluation.rows[1]["accuracy"]  # production is always right
    assert math.isnan(table[0]["mcnemar_p"]) and math.isnan(table[0]["parameters"])  # as pandas wrote them
    assert evaluation.decision_text(None).splitlines()[-1] == "registry: unchanged"


# What an earlier cycle's notebooks recorded (run.record_results), trimmed to one candidate.
LEGACY_FINETUNE = {
    "candidate_dirs": {"tfidf-logreg": "/runs/x/artifacts/candidates/tfidf-logreg"},
    "candidates": {"tfidf-logreg": {
        "kind": "tfidf_logreg", "name": "tfidf-logreg", "parameters": 24437, "peak_rss_mb": 458.9,
        "train_examples": 552, "train_seconds": 1.89, "trainable_parameters": 24437,
        "final_loss": float("nan"),
    }},
    "peak_rss_mb": 3424.7,
    "recorded_at": "2026-12-01T16:59:21+00:00",
    "stage": "03_finetune",
}  # fmt: skip
LEGACY_EVAL = {
    "peak_rss_mb": 1488.2,
    "promoted": None,
    "recorded_at": "2026-12-01T17:00:50+00:00",
    "stage": "04_eval",
    "table": [
        {"accuracy": 0.943089430894309, "ci95": "[0.915, 0.962]", "cost_per_1k_usd": 0.23724943089430894,
         "mcnemar_p": float("nan"), "model": "baseline", "p50_ms": 1189.0, "parameters": float("nan"),
         "promoted": False, "ttft_p50_ms": float("nan"), "vs_baseline_points": 0.0},
        {"accuracy": 0.7398373983739838, "ci95": "[0.693, 0.782]", "cost_per_1k_usd": 2.5308555168755144e-05,
         "mcnemar_p": 1.7945187017759128e-13, "model": "tfidf-logreg", "p50_ms": 0.9785480001482938,
         "parameters": 24437.0, "promoted": False, "ttft_p50_ms": None, "vs_baseline_points": -20.3},
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    "kind, legacy, added",
    [
        (FinetuneResult, LEGACY_FINETUNE, {"ablation_dirs": {}}),
        (EvalResult, LEGACY_EVAL, {"table": [{**row, **ADDED_HEADLINE} for row in LEGACY_EVAL["table"]]}),
    ],
)
def test_results_read_and_write_the_json_the_notebooks_wrote(tmp_path, kind, legacy, added):
    """Older results read back; fields added since get their defaults (`added`), nothing else changes."""
    run = RunDir(tmp_path)
    path = run.results_path(kind.stage)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(legacy, indent=2, sort_keys=True))
    write_result(run, read_result(run, kind))
    rewritten = json.loads(path.read_text())
    volatile = {"recorded_at", "peak_rss_mb"}
    assert set(rewritten) == set(legacy) | set(added)
    assert json.dumps(
        {k: v for k, v in rewritten.items() if k not in volatile}, sort_keys=True
    ) == json.dumps(
        {k: v for k, v in {**legacy, **added}.items() if k not in volatile}, sort_keys=True
    )  # NaN and null kept apart, ints stay ints
