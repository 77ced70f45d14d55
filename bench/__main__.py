"""Run the benchmark suite: `python -m bench [--quick] [--only NAME ...]`.

Each benchmark is a script in bench/ that measures against its own baseline in the same run and prints
one JSON line. Results go to runs/bench/<timestamp>/results.json; BENCHMARKS.md summarises them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def latest_demo_router_args() -> list[str]:
    """router_decision needs a fine-tuned SmolLM2 and its test split: the latest demo cycle's."""
    runs = sorted(REPO.glob("runs/*-demo/artifacts/candidates/smollm2-lora/candidate.json"))
    if not runs:
        raise SystemExit("router_decision needs a demo cycle first: make cycle")
    run = runs[-1].parents[3]
    (split,) = (run / "artifacts" / "ground_truth").glob("*/test.parquet")
    return ["--candidate", str(runs[-1].parent), "--test", str(split)]


CPU_SMOKE = ["--device", "cpu", "--steps", "2"]

# name -> (script, full-size arguments, quick arguments); a callable is evaluated when the benchmark runs
BENCHMARKS = {
    "cycle": ("bench/cycle.py", ["--sizes", "test", "demo", "--repeats", "1"], ["--sizes", "test"]),
    "kernel_shutdown": ("bench/kernel_shutdown.py", ["--repeats", "5"], ["--repeats", "1"]),
    "profile_cycle": ("bench/profile_cycle.py", ["--size", "demo"], ["--size", "test", "--rate", "20"]),
    "ingest": ("bench/ingest.py", ["--records", "1000000"], ["--records", "5000"]),
    "ingest_throughput": ("bench/ingest_throughput.py", [], ["--lines", "2000", "--small", "500"]),
    "serve": ("bench/serve.py", ["--n", "200"], ["--n", "10", "--warmup", "2"]),
    "serve_throughput": (
        "bench/serve_throughput.py",
        [],
        ["--requests", "200", "--warmup", "20", "--ingest-records", "2000"],
    ),
    "pii_quality": ("bench/pii_quality.py", [], ["--copies", "1", "--repeats", "1"]),
    "sft_step": ("bench/sft_step.py", [], ["--steps", "1", "--warmup", "1", "--batch", "2"]),
    "router_decision": ("bench/router_decision.py", latest_demo_router_args, latest_demo_router_args),
    # On a lent GPU run it directly: python bench/gpu_check.py (cuda, then the same steps on CPU).
    "gpu_check": ("bench/gpu_check.py", CPU_SMOKE, CPU_SMOKE),
}


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the benchmark suite.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that each benchmark runs")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    parser.add_argument(
        "--out", type=Path, default=REPO / "runs" / "bench" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
    }
    for name in args.only:
        script, full, quick = BENCHMARKS[name]
        extra = quick if args.quick else full
        command = [sys.executable, script, *(extra() if callable(extra) else extra)]
        print(f"[bench] {name}: {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            results[name] = {"error": done.stderr[-2000:], "command": command[1:]}
            print(f"[bench] {name}: FAILED\n{done.stderr[-2000:]}", flush=True)
            continue
        results[name] = {**json.loads(done.stdout.strip().splitlines()[-1]), "command": command[1:]}
        print(f"[bench] {name}: {time.perf_counter() - started:.0f} s", flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(args.out / "results.json")
    if any("error" in r for r in results.values() if isinstance(r, dict)):
        sys.exit(1)


if __name__ == "__main__":
    main()
