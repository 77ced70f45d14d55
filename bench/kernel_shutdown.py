"""What a stage's kernel costs after its last cell: papermill stopping it gracefully vs at once.

Each repeat executes the same two-cell notebook (the stages' imports and a sentence encoder's, as a stage
kernel holds them) with the cycle's kernel, once with `shutdown_kernel="graceful"` and once with "immediate"
(`flywheel.cycle.run_stage`), interleaved so that machine load hits both alike. Prints one JSON line: median
seconds per notebook for each mode, the cells' own seconds, and the ratio immediate / graceful.
Usage: python bench/kernel_shutdown.py [--repeats 5] [--kernel flywheel]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
import papermill as pm

STAGE_IMPORTS = """import sentence_transformers
import flywheel.collect.stage, flywheel.triage.stage, flywheel.finetune.stage, flywheel.evaluate.stage
print(x)"""


def notebook(path: Path, kernel: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "language": "python", "display_name": kernel}
    nb.cells = [
        nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(STAGE_IMPORTS),
    ]
    nbformat.write(nb, path)


def one(source: Path, target: Path, kernel: str, mode: str) -> tuple[float, float]:
    started = time.perf_counter()
    pm.execute_notebook(
        str(source),
        str(target),
        parameters={"x": 1},
        kernel_name=kernel,
        progress_bar=False,
        shutdown_kernel=mode,
    )
    wall = time.perf_counter() - started
    cells = sum(c.metadata.papermill.duration or 0 for c in nbformat.read(target, as_version=4).cells)
    return wall, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kernel", default="flywheel")
    args = parser.parse_args()
    modes = ("graceful", "immediate")
    walls: dict[str, list[float]] = {m: [] for m in modes}
    cells: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="bench-kernel-") as tmp:
        source, target = Path(tmp) / "stage.ipynb", Path(tmp) / "out.ipynb"
        notebook(source, args.kernel)
        for _ in range(args.repeats):
            for mode in modes:
                wall, cell = one(source, target, args.kernel, mode)
                walls[mode].append(wall)
                cells[mode].append(cell)
    median = {m: round(statistics.median(walls[m]), 2) for m in modes}
    print(
        json.dumps(
            {
                "repeats": args.repeats,
                "notebook_seconds_median": median,
                "cell_seconds_median": {m: round(statistics.median(cells[m]), 2) for m in modes},
                "ratio_immediate_to_graceful": round(median["immediate"] / median["graceful"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
