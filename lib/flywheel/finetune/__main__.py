"""Train a run's candidates from the command line — the same function the notebook calls.

    python -m flywheel.finetune --run runs/<cycle-id> [--only smollm2-lora] [--set smollm2-lora.max_steps=20]
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m flywheel.finetune --run runs/<id>

Under `accelerate launch` each process trains data-parallel; only the main process writes the records.
"""

from __future__ import annotations

import argparse
import json

import yaml

from flywheel.core.config import load_config
from flywheel.core.runs import RunDir
from flywheel.finetune.train import finetune_run


def parse_sets(items: list[str]) -> dict:
    overrides: dict = {}
    for item in items:
        key, _, value = item.partition("=")
        name, _, field = key.rpartition(".")
        if not name or not field or not _:
            raise SystemExit(f"--set wants candidate.field=value, got {item!r}")
        overrides.setdefault(name, {})[field] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flywheel.finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run directory whose triage stage has finished")
    parser.add_argument("--only", nargs="*", default=[], help="candidate names (default: all)")
    parser.add_argument("--set", nargs="*", default=[], dest="sets", help="candidate.field=value overrides")
    args = parser.parse_args(argv)
    run = RunDir(args.run)
    records = finetune_run(run, load_config(run.config_path), args.only, parse_sets(args.sets))
    summary = {n: {k: v for k, v in r.items() if k != "loss_curve"} for n, r in records.items() if r}
    if summary:
        print(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
