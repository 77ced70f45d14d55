"""Ingestion throughput with PII masking against `pandas.read_json` on the same file, at two file sizes.

    .venv/bin/python bench/ingest_throughput.py                          # 12,500 and 50,000 lines
    .venv/bin/python bench/ingest_throughput.py --lines 2000 --small 500 # a quick check
    .venv/bin/python bench/ingest_throughput.py --old-lib /tmp/orig/lib  # also an older checkout's ingest

Writes a demo-like JSONL file (the seeded demo world's valid records repeated with fresh ids and later
timestamps, about 2 KB a line, ~5% with PII, some of it names), and its first `--small` lines as a second
file. For each file, each in a fresh child process (import and model loading are not timed; peak memory is
the child's own):

- `pandas`: `pandas.read_json(path, lines=True)`: parsing only, the in-run baseline;
- `flywheel`: `flywheel.collect.ingest.ingest_with_config` into a new SQLite store with the demo config's
  PII settings (names included): parse, validate, hash, mask, write; worker processes as ingest chooses
  them (one per idle core for a file of 16 MiB or more; `workers` in the output, `--workers` forces a
  number; their peak memory is reported apart);
- `old` (with `--old-lib`): the same call from another checkout's `lib/` and its demo config.

Prints one JSON object: lines/s and CPU microseconds per line (the child's and its workers') of each,
flywheel/pandas (and old/pandas) ratios, peak RSS per size, the load average before and after,
with the growth from the small to the large file (flat memory: about zero for flywheel).
Absolute figures depend on what else the machine runs; compare the ratios measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_files(work: Path, lines: int, small: int) -> tuple[Path, Path]:
    sys.path.insert(0, str(REPO))
    from bench.ingest import write_records  # the demo world's valid records, repeated with new ids

    large = work / f"logs-{lines}.jsonl"
    write_records(large, lines)
    small_path = work / f"logs-{small}.jsonl"
    with open(large, "rb") as src, open(small_path, "wb") as dst:
        for _ in range(small):
            dst.write(src.readline())
    return small_path, large


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (ingest's workers): less noisy than wall
    time on a shared machine."""
    usages = map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return sum(u.ru_utime + u.ru_stime for u in usages)


def _peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # KiB on Linux


def child(kind: str, path: Path, work: Path, config_path: Path, workers: int | None) -> dict:
    """In the child: import and load models first, then time the work alone."""
    import pandas as pd

    from flywheel.collect.ingest import ingest_with_config
    from flywheel.core.config import load_config
    from flywheel.core.pii import PiiMasker
    from flywheel.core.store import Store

    config = load_config(config_path)
    PiiMasker.from_config(config.collect.pii).mask("Warm up with Dana Smith")  # loads the NER model
    if workers is not None:
        os.environ["FLYWHEEL_INGEST_WORKERS"] = str(workers)
    before = _peak_mb()
    cpu_before = _cpu_s()
    started = time.perf_counter()
    if kind == "pandas":
        lines = len(pd.read_json(path, lines=True))
        extra = {}
    else:
        db = work / f"store-{kind}-{path.stem}.db"
        db.unlink(missing_ok=True)
        report = ingest_with_config(Store(f"sqlite:///{db}"), [path], config, progress=False)
        assert report.read == report.accepted + report.duplicates + report.quarantined
        lines = report.read
        extra = {"accepted": report.accepted, "quarantined": report.quarantined}
        extra["workers"] = report.as_dict().get("workers", 0)  # an older checkout has no such field
    seconds = time.perf_counter() - started
    cpu = _cpu_s() - cpu_before
    return {
        "lines": lines,
        "seconds": round(seconds, 2),
        "lines_per_s": round(lines / seconds, 1),
        "cpu_us_per_line": round(cpu / lines * 1e6, 1),
        "peak_rss_mb": _peak_mb(),
        "rss_before_work_mb": before,
        "workers_peak_rss_mb": _peak_mb(resource.RUSAGE_CHILDREN),
        **extra,
    }


def run_child(kind: str, path: Path, work: Path, args) -> dict:
    env = dict(os.environ)
    config = REPO / "configs" / "demo.yaml"
    if kind == "old":
        env["PYTHONPATH"] = str(args.old_lib)
        config = Path(args.old_lib).resolve().parent / "configs" / "demo.yaml"
    command = [sys.executable, __file__, "--child", kind, "--path", str(path), "--workdir", str(work)]
    command += ["--config", str(config)]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {path.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000, help="lines of the large file")
    parser.add_argument("--small", type=int, default=12_500, help="lines of the small file")
    parser.add_argument("--workers", type=int, default=None, help="ingest worker processes (default: auto)")
    parser.add_argument("--old-lib", type=Path, default=None, help="also measure this checkout's lib/")
    parser.add_argument("--workdir", type=Path, default=None, help="files and stores (default: temp)")
    parser.add_argument("--child", choices=["pandas", "flywheel", "old"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="flywheel-ingest-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(child(args.child, args.path, work, args.config, args.workers)))
        return

    small, large = write_files(work, args.lines, args.small)
    kinds = ["pandas", "flywheel"] + (["old"] if args.old_lib else [])
    results: dict = {"lines": {"small": args.small, "large": args.lines}, "cores": os.cpu_count()}
    results["loadavg_before"] = os.getloadavg()  # what else the machine ran: ratios hold, absolutes vary
    for size, path in (("small", small), ("large", large)):
        runs = {kind: run_child(kind, path, work, args) for kind in kinds}
        runs["file_mb"] = round(path.stat().st_size / 2**20, 1)
        for kind in kinds[1:]:
            runs[f"{kind}_over_pandas"] = round(runs[kind]["lines_per_s"] / runs["pandas"]["lines_per_s"], 3)
        results[size] = runs
    results["peak_rss_growth_small_to_large_mb"] = {
        kind: round(results["large"][kind]["peak_rss_mb"] - results["small"][kind]["peak_rss_mb"], 1)
        for kind in kinds
    }
    results["loadavg_after"] = os.getloadavg()
    results["flywheel_over_pandas"] = results["large"]["flywheel_over_pandas"]
    if args.old_lib:
        results["old_over_pandas"] = results["large"]["old_over_pandas"]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
