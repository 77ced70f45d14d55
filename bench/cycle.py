"""Full-cycle wall time and peak memory per stage, at test size and at demo size.

Each size runs `flywheel cycle` in a fresh runs folder (so nothing is resumed), `--repeats` times;
prints one JSON line: per size, median and spread of total and per-stage seconds and peak RSS.
Usage: python bench/cycle.py [--sizes test demo] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOALS_SECONDS = {"test": 120, "demo": 600}
GOAL_PEAK_MB = 4096  # demo peak memory goal (any one stage kernel)


def one_cycle(size: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-cycle-{size}-") as runs:
        started = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "flywheel.cli",
                "cycle",
                "--config",
                f"configs/{size}.yaml",
                "--runs-dir",
                runs,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
        manifest = json.loads((Path(out.stdout.strip().splitlines()[-1]) / "manifest.json").read_text())
    stages = manifest["stages"]
    return {
        "wall_seconds": wall,
        "stage_seconds": {name: s["seconds"] for name, s in stages.items()},
        "stage_peak_rss_mb": {name: s.get("peak_rss_mb") for name, s in stages.items()},
    }


def summarise(runs: list[dict], size: str) -> dict:
    walls = [r["wall_seconds"] for r in runs]
    stages = runs[0]["stage_seconds"].keys()
    peak = max(max(v for v in r["stage_peak_rss_mb"].values() if v) for r in runs)
    return {
        "repeats": len(runs),
        "wall_seconds_median": round(statistics.median(walls), 1),
        "wall_seconds_min_max": [round(min(walls), 1), round(max(walls), 1)],
        "stage_seconds_median": {
            s: round(statistics.median(r["stage_seconds"][s] for r in runs), 1) for s in stages
        },
        "peak_rss_mb_max": peak,
        "goal_seconds": GOALS_SECONDS.get(size),
        "ratio_to_goal": round(statistics.median(walls) / GOALS_SECONDS[size], 2)
        if size in GOALS_SECONDS
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["test", "demo"])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    result = {"benchmark": "cycle", "goal_peak_mb": GOAL_PEAK_MB}
    for size in args.sizes:
        one_cycle(size)  # warm-up: caches (converted weights, compiled kernels, page cache)
        result[size] = summarise([one_cycle(size) for _ in range(args.repeats)], size)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
