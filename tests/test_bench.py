"""Benchmarks are not tests: nothing here times anything. These check that the benchmark scripts run on tiny
sizes and print their JSON line (the slow tier: they take minutes together), and that the profile summary
gives samples to the right stage."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.profile_cycle import summarise  # noqa: E402


def test_profile_summary_gives_samples_to_stages(tmp_path):
    runner = 'process 1:"python -m flywheel.cli cycle"'
    finetune = f'{runner};process 2:"python -m ipykernel_launcher -f a.json"'
    evaluate = f'{runner};process 3:"python -m ipykernel_launcher -f b.json"'
    argilla = f'{finetune.replace("2:", "4:")};process 5:"/root/.cache/flywheel/argilla/bin/python -m server"'
    lines = [
        # the fine-tune kernel: 60 samples under train_causal, 50 of them in torch; 5 importing torch
        f"{finetune};<module> (ipykernel_1/1.py:3);train_causal (/repo/lib/flywheel/finetune/sft.py:120);"
        "forward (torch/nn/modules/linear.py:125) 50",
        f"{finetune};<module> (ipykernel_1/1.py:3);train_causal (flywheel/finetune/sft.py:120);"
        "save (flywheel/finetune/sft.py:200) 10",
        f"{finetune};<module> (ipykernel_1/1.py:1);<module> (torch/__init__.py:1) 5",
        # the eval kernel: the innermost workbench frame names the function
        f"{evaluate};evaluate_all (flywheel/evaluate/stage.py:40);"
        "score (flywheel/core/inference.py:180);forward (torch/nn/modules/module.py:1) 25",
        f"{argilla};serve (argilla_server/_app.py:10);query (sqlalchemy/engine/base.py:5) 6",
        f"{runner};main (flywheel/cli.py:50);run (papermill/execute.py:100) 4",
        "a malformed line",
    ]
    folded = tmp_path / "cycle.folded"
    folded.write_text("\n".join(lines))
    summary = summarise(folded)
    assert summary["samples"] == 100
    stages = summary["stages"]
    assert stages["03_finetune"]["share"] == 0.65  # its imports count for the stage too
    assert stages["03_finetune"]["functions"] == {
        "flywheel.finetune.sft.train_causal": 0.769,
        "flywheel.finetune.sft.save": 0.154,
        "(outside the workbench: imports, kernel)": 0.077,
    }
    assert stages["03_finetune"]["libraries"] == {"torch": 0.846, "flywheel": 0.154}
    assert stages["04_eval"]["functions"] == {"flywheel.core.inference.score": 1.0}
    assert stages["argilla server"]["share"] == 0.06
    assert stages["runner"]["libraries"] == {"papermill": 1.0}


def test_ingest_and_serve_benchmarks_run_on_tiny_sizes(bench_script):
    ingest = json.loads(bench_script("bench/ingest.py", "--records", "2000"))
    assert ingest["records"] == 2000
    serve = json.loads(bench_script("bench/serve.py", "--n", "10", "--warmup", "2"))
    assert serve["n"] == 10


def test_router_decision_benchmark_runs_on_a_tiny_model(tmp_path, bench_script):
    from test_finetune_causal import CATALOG, split_task, tiny

    from flywheel.finetune.train import train_candidate

    train, test = split_task()
    train_candidate(tiny(max_steps=20), train, CATALOG, tmp_path / "tiny", seed=0)
    test.to_parquet(tmp_path / "test.parquet")
    printed = bench_script(
        "bench/router_decision.py",
        *("--candidate", str(tmp_path / "tiny"), "--test", str(tmp_path / "test.parquet")),
        *("--n", "8", "--batch1-queries", "2", "--warmup", "1"),
    )
    result = json.loads(printed)
    assert set(result) >= {"score", "score_full", "generate", "generate_full", "generate_over_score_batch1"}
    assert result["items"] == 8
    assert result["score"]["unparseable"] == result["score_full"]["unparseable"] == 0  # scoring picks a label


def test_the_whole_suite_runs_quick(tmp_path, bench_script):
    """`python -m bench --quick`: every benchmark at tiny size (router_decision needs a demo cycle)."""
    names = ["cycle", "kernel_shutdown", "profile_cycle", "ingest", "serve", "sft_step", "gpu_check"]
    printed = bench_script("-m", "bench", "--quick", "--only", *names, "--out", str(tmp_path), timeout=1800)
    assert printed == str(tmp_path / "results.json")
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(names) <= set(results)
    shutdown = results["kernel_shutdown"]
    assert set(shutdown["notebook_seconds_median"]) == {"graceful", "immediate"}
    for mode, seconds in shutdown["notebook_seconds_median"].items():  # a notebook's time holds its cells'
        assert seconds > shutdown["cell_seconds_median"][mode] > 0


def test_ingest_throughput_benchmark_runs_with_workers(bench_script):
    args = ["--lines", "240", "--small", "60", "--workers", "2"]
    result = json.loads(bench_script("bench/ingest_throughput.py", *args, timeout=900))
    assert result["large"]["flywheel"]["lines"] == 240 and result["small"]["pandas"]["lines"] == 60
    assert {"flywheel_over_pandas", "peak_rss_growth_small_to_large_mb"} <= set(result)


def test_serve_throughput_benchmark_runs_and_checks_the_log(bench_script):
    """bench/serve_throughput.py checks what it claims: every answered request is in the store once."""
    args = ["--requests", "100", "--warmup", "10", "--clients", "8", "--ingest-records", "3000"]
    results = json.loads(bench_script("bench/serve_throughput.py", *args, timeout=900))["results"]
    assert set(results) == {"bare", "flywheel", "flywheel+ingest"}
    for name in ("flywheel", "flywheel+ingest"):
        assert results[name]["every_answer_logged_once"], results[name]
        assert results[name]["statuses"] == {"200": 110}
        assert results[name]["service_cpu_ms_per_request"] > 0
    ingest = results["flywheel+ingest"]["ingest"]  # the demo world repeats a few records: duplicates
    assert ingest["read"] == 3000 and ingest["accepted"] + ingest["duplicates"] == 3000
