"""Benchmarks are not tests: nothing here times anything. These check that the benchmark scripts run on tiny
sizes and print their JSON line, and that the profile summary gives samples to the right stage."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.profile_cycle import summarise  # noqa: E402


def run_bench(*args: str, timeout: int = 600) -> dict:
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_profile_summary_gives_samples_to_stages(tmp_path):
    folded = tmp_path / "cycle.folded"
    folded.write_text(
        "\n".join(
            [
                # fine-tune: 60 samples, 50 of them in torch under train_causal
                "<module> (ipykernel_1/1.py:3);train_causal (/repo/lib/flywheel/finetune/causal.py:120);"
                "forward (torch/nn/modules/linear.py:125) 50",
                "<module> (ipykernel_1/1.py:3);train_causal (/repo/lib/flywheel/finetune/causal.py:120);"
                "save (flywheel/finetune/causal.py:200) 10",
                # eval: 30, the outermost eval frame names the function
                "evaluate_all (flywheel/evaluate/report.py:40);"
                "candidate_row (flywheel/evaluate/scoring.py:90);score (flywheel/causal.py:180);"
                "forward (torch/nn/modules/module.py:1) 30",
                "serve (argilla_server/_app.py:10);query (sqlalchemy/engine/base.py:5) 6",
                "main (flywheel/cli.py:50);run (papermill/execute.py:100) 4",
                "a malformed line",
            ]
        )
    )
    summary = summarise(folded)
    assert summary["samples"] == 100
    stages = summary["stages"]
    assert stages["03_finetune"]["share"] == 0.6
    assert stages["03_finetune"]["functions"] == {"flywheel.finetune.causal.train_causal": 1.0}
    assert stages["03_finetune"]["libraries"] == {"torch": 0.833, "flywheel": 0.167}
    assert stages["04_eval"]["functions"] == {"flywheel.evaluate.report.evaluate_all": 1.0}
    assert stages["argilla server"]["share"] == 0.06
    assert stages["runner and kernels"]["libraries"] == {"papermill": 1.0}


def test_ingest_and_serve_benchmarks_run_on_tiny_sizes():
    ingest = run_bench("bench/ingest.py", "--records", "2000")
    assert ingest["records"] == 2000
    serve = run_bench("bench/serve.py", "--n", "10", "--warmup", "2")
    assert serve["n"] == 10


def test_router_decision_benchmark_runs_on_a_tiny_model(tmp_path):
    from test_finetune_causal import CATALOG, split_task, tiny

    from flywheel.finetune.train import train_candidate

    train, test = split_task()
    train_candidate(tiny(max_steps=20), train, CATALOG, tmp_path / "tiny", seed=0)
    test.to_parquet(tmp_path / "test.parquet")
    result = run_bench(
        "bench/router_decision.py",
        *("--candidate", str(tmp_path / "tiny"), "--test", str(tmp_path / "test.parquet")),
        *("--n", "8", "--batch1-queries", "2", "--warmup", "1"),
    )
    assert set(result) >= {"score", "score_full", "generate", "generate_full", "generate_over_score_batch1"}
    assert all(0 <= result[way]["accuracy"] <= 1 for way in ("score", "generate"))


@pytest.mark.slow
def test_the_whole_suite_runs_quick(tmp_path):
    """`python -m bench --quick`: every benchmark at tiny size (router_decision needs a demo cycle)."""
    names = ["cycle", "profile_cycle", "ingest", "serve", "sft_step", "gpu_check"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", *names, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(names) <= set(results)
