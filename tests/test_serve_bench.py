"""bench/serve_throughput.py runs on a tiny size and checks what it claims (nothing here is timed)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_serve_throughput_benchmark_runs_and_checks_the_log():
    command = [sys.executable, "bench/serve_throughput.py", "--requests", "100", "--warmup", "10"]
    command += ["--clients", "8", "--ingest-records", "3000"]
    done = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    results = summary["results"]
    assert set(results) == {"bare", "flywheel", "flywheel+ingest"}
    for name in ("flywheel", "flywheel+ingest"):
        assert results[name]["every_answer_logged_once"], results[name]
        assert results[name]["statuses"] == {"200": 110}
        assert results[name]["service_cpu_ms_per_request"] > 0
    ingest = results["flywheel+ingest"]["ingest"]  # the demo world repeats a few records: duplicates
    assert ingest["read"] == 3000 and ingest["accepted"] + ingest["duplicates"] == 3000
