"""Resolve the configured log source into files, recording what was read."""

from __future__ import annotations

from pathlib import Path

from flywheel.collect.ingest import log_files
from flywheel.config import Config
from flywheel.runs import RunDir, file_sha256

DEMO_FOLDER = "demo_world"  # the demo's generated logs and its hidden truth, outside artifacts/


def demo_truth_path(run: RunDir) -> Path:
    """The demo's hidden truth: read only by the simulated expert panel and to score judges."""
    return run.path / DEMO_FOLDER / "hidden_truth.jsonl"


def prepare_source(config: Config, run: RunDir) -> list[Path]:
    """The log files of this cycle; for the demo they are generated (seeded) into the run directory."""
    if config.source.kind == "demo":
        from flywheel.demo.generator import generate_demo

        folder = run.path / DEMO_FOLDER
        if not (folder / "logs.jsonl").exists():  # resumable: generated once per run
            generate_demo(
                folder,
                experts=config.experts,
                n_interactions=config.source.n_interactions,
                weeks=config.source.weeks,
                start=config.source.start,
                seed=config.seed,
            )
        return [folder / "logs.jsonl"]
    return log_files(config.source.paths)


def input_hashes(files: list[Path]) -> dict[str, str]:
    return {str(path): file_sha256(path) for path in files}
