"""Ingestion throughput and peak memory against a plain pandas load of the same file, in the same run.

    .venv/bin/python bench/ingest.py --records 1000000        # the real measurement (minutes)
    .venv/bin/python bench/ingest.py --records 20000          # a quick check

Writes a JSONL file of N records (the seeded demo world's valid lines, repeated with fresh ids and later
timestamps; about 5% hold PII), then measures, each in a fresh child process so that peak memory is its own:

- `flywheel`: `flywheel.collect.ingest.ingest_with_config` into a new SQLite store with the demo config's
  PII settings (validation, content hashing, PII masking incl. the NER pass, batched writes);
- `pandas`: `pandas.read_json(path, lines=True)` (parse only: no validation, no store).

Prints one JSON object: records/s, wall seconds and peak RSS (MiB) of each, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_records(path: Path, n: int, seed: int = 7) -> None:
    from flywheel.core.config import load_config
    from flywheel.demo.generator import generate_demo

    config = load_config(REPO / "configs" / "demo.yaml")
    demo = path.parent / "demo"
    generate_demo(demo, config.experts, n_interactions=1200, weeks=6, seed=seed)
    template = [
        json.loads(line) for line in (demo / "logs.jsonl").read_text().splitlines() if _is_object(line)
    ]
    written, copy = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < n:
            shift = timedelta(weeks=6 * copy)
            for record in template:
                if written == n:
                    break
                record = dict(record)
                record["id"] = f"{record['id']}-{copy}"
                stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
                record["timestamp"] = (stamp + shift).isoformat()
                f.write(json.dumps(record) + "\n")
                written += 1
            copy += 1


def _is_object(line: str) -> bool:
    """The demo's valid records (its malformed lines would not survive the id and time rewrite)."""
    from pydantic import ValidationError

    from flywheel.core.schema import Interaction

    try:
        Interaction.model_validate_json(line)
    except ValidationError:
        return False
    return True


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(kind: str, path: Path, work: Path) -> dict:
    """Runs in the child process: import everything first, then measure the work alone."""
    import pandas as pd

    from flywheel.collect.ingest import ingest_with_config
    from flywheel.core.config import load_config
    from flywheel.core.pii import load_ner
    from flywheel.core.store import Store

    config = load_config(REPO / "configs" / "demo.yaml")
    if kind == "flywheel" and config.collect.pii.person_names:
        load_ner()  # model load is a one-off cost, not throughput
    before = _peak_mb()
    started = time.perf_counter()
    if kind == "flywheel":
        store = Store(f"sqlite:///{work / 'bench-store.db'}")
        report = ingest_with_config(store, [path], config, progress=False)
        rows = report.read
        assert report.reconciles()
    else:
        rows = len(pd.read_json(path, lines=True))
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "records_per_s": round(rows / seconds, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
        "rss_before_work_mb": round(before, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the file and store go (default: temp)"
    )
    parser.add_argument("--child", choices=["flywheel", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="flywheel-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(child(args.child, args.path, work)))
        return

    path = work / "logs.jsonl"
    started = time.perf_counter()
    write_records(path, args.records)
    results = {
        "records": args.records,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "generate_seconds": round(time.perf_counter() - started, 1),
    }
    for kind in ("flywheel", "pandas"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--path", str(path), "--workdir", str(work)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    results["ratio"] = {
        "throughput_flywheel_over_pandas": round(
            results["flywheel"]["records_per_s"] / results["pandas"]["records_per_s"], 3
        ),
        "peak_rss_flywheel_over_pandas": round(
            results["flywheel"]["peak_rss_mb"] / results["pandas"]["peak_rss_mb"], 3
        ),
        "work_rss_growth_mb": {
            k: round(results[k]["peak_rss_mb"] - results[k]["rss_before_work_mb"], 1)
            for k in ("flywheel", "pandas")
        },
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
