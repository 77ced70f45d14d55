"""Where the time goes: a sampling profile (py-spy) of one full `flywheel cycle`, summarised per stage.

py-spy samples the runner and every process it starts (the notebook kernels, the Argilla server and its
worker) without touching them. Each kernel is given to the stage whose `flywheel.<stage>` frames (collect,
triage, finetune, evaluate) its samples show most, and all its samples — imports included — count for that
stage; the Argilla processes count apart ("argilla server", started by triage), the rest as "runner". Within
a stage the summary names the innermost workbench functions and the libraries where the samples landed.
Idle threads are not sampled, so shares are of CPU-busy time.

Prints one JSON line; the raw folded stacks are kept beside the results for a flame graph
(`py-spy` raw format, readable by speedscope or flamegraph.pl).

    python bench/profile_cycle.py --size demo --out runs/bench/profile
    python bench/profile_cycle.py --size test --rate 20     # quick
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*):\d+\)$")
STAGES = {"collect": "01_collect", "triage": "02_triage", "finetune": "03_finetune", "evaluate": "04_eval"}


def parse(stack: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(function, file) per code frame, outermost first, and the process command lines, from one raw stack."""
    code, processes = [], []
    for frame in stack.split(";"):
        if frame.startswith("process "):
            processes.append(frame)
        elif match := FRAME.match(frame.strip()):
            code.append((match["function"], match["file"]))
    return code, processes


def library(file: str) -> str:
    """The top-level package a frame's file belongs to (site-packages paths are shortened by py-spy)."""
    parts = Path(file).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    if "flywheel" in parts:
        return "flywheel"
    return parts[0].removesuffix(".py") if parts and not parts[0].startswith("<") else "python"


def workbench_function(code: list[tuple[str, str]]) -> str | None:
    """The innermost frame in the workbench's own code, as module.function."""
    for function, file in reversed(code):
        match = re.search(r"flywheel/([\w/]+)\.py", file)
        if match:
            return f"flywheel.{match[1].replace('/', '.')}.{function}"
    return None


def stage_of(code: list[tuple[str, str]]) -> str | None:
    for _, file in code:
        match = re.search(r"flywheel/(\w+)/", file)
        if match and match[1] in STAGES:
            return STAGES[match[1]]
    return None


def summarise(folded: Path, top: int = 6) -> dict:
    samples = []  # (process key, stage seen in this stack, workbench function, leaf library, count)
    kernel_votes: dict[str, Counter] = defaultdict(Counter)
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        code, processes = parse(stack)
        if any("argilla" in p for p in processes):
            key = "argilla server"
        else:
            kernel = next((p for p in processes if "ipykernel" in p), None)
            key = kernel.split(":")[0] if kernel else "runner"
        stage = stage_of(code)
        if stage:
            kernel_votes[key][stage] += int(count)
        leaf = library(code[-1][1]) if code else "python"
        samples.append((key, workbench_function(code), leaf, int(count)))

    def stage_for(key: str) -> str:
        votes = kernel_votes.get(key)
        return votes.most_common(1)[0][0] if votes and key.startswith("process ") else key

    per_stage: Counter = Counter()
    functions: dict[str, Counter] = defaultdict(Counter)
    libraries: dict[str, Counter] = defaultdict(Counter)
    for key, function, leaf, count in samples:
        stage = stage_for(key)
        per_stage[stage] += count
        libraries[stage][leaf] += count
        functions[stage][function or "(outside the workbench: imports, kernel)"] += count
    total = sum(per_stage.values()) or 1

    def shares(counter: Counter, of: int) -> dict[str, float]:
        return {k: round(v / of, 3) for k, v in counter.most_common(top)}

    return {
        "samples": total,
        "stages": {
            stage: {
                "share": round(n / total, 3),
                "functions": shares(functions[stage], n),
                "libraries": shares(libraries[stage], n),
            }
            for stage, n in per_stage.most_common()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="demo", choices=["test", "demo"])
    parser.add_argument("--rate", type=int, default=10, help="samples per second per process")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "profile")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args.out.mkdir(parents=True, exist_ok=True)
    folded = args.out / f"cycle-{args.size}.folded"
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as runs:
        command = [sys.executable, "-m", "flywheel.cli", "cycle", "--config", f"configs/{args.size}.yaml"]
        started = time.perf_counter()
        sampler = [py_spy, "record", "--subprocesses", "--nonblocking", "--format", "raw"]
        subprocess.run(
            [*sampler, "--rate", str(args.rate), "--output", str(folded), "--", *command, "--runs-dir", runs],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
    print(
        json.dumps(
            {"size": args.size, "wall_seconds": round(wall, 1), "folded": str(folded), **summarise(folded)}
        )
    )


if __name__ == "__main__":
    main()
