"""Resolve the configured log source into files, recording what was read.

Raw logs never go into a run directory (it is meant to be shared, and logs hold unmasked PII): the manifest
records their absolute paths and sha256 instead. The demo's generated world (raw logs with planted PII and
the hidden truth) lives beside the runs, in `<runs root>/demo-worlds/<config name>-<digest>/`, one folder
per set of generator arguments, generated once and reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from flywheel.collect.ingest import log_files
from flywheel.core.config import Config, load_config
from flywheel.core.runs import RunDir, file_sha256

DEMO_WORLDS = "demo-worlds"
LEGACY_DEMO_FOLDER = "demo_world"  # inside the run directory, before raw logs were kept out of it


def demo_world_dir(config: Config, runs_root: Path) -> Path:
    """Where the demo world of this config lives: keyed by everything the generator reads."""
    from flywheel.demo.generator import GENERATOR_VERSION

    source = config.source
    key = [GENERATOR_VERSION, config.experts, source.n_interactions, source.weeks, source.start, config.seed]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(runs_root).resolve() / DEMO_WORLDS / f"{config.name}-{digest}"


def demo_truth_path(run: RunDir) -> Path:
    """The demo's hidden truth: read only by the simulated expert panel and to score judges."""
    legacy = run.path / LEGACY_DEMO_FOLDER / "hidden_truth.jsonl"
    if legacy.is_file():  # a run created before the demo world moved out of run directories
        return legacy
    return demo_world_dir(load_config(run.config_path), run.runs_root) / "hidden_truth.jsonl"


def source_paths(config: Config, run: RunDir) -> list[Path]:
    """The configured `source.paths`, absolute: as resolved when the cycle was created (the manifest's
    `source.paths`), else from the current folder."""
    recorded = run.manifest().get("source", {}).get("paths")
    return [Path(p) for p in recorded] if recorded else config.source.resolved_paths(Path.cwd())


def prepare_source(config: Config, run: RunDir) -> list[Path]:
    """The log files of this cycle; for the demo they are generated (seeded) outside the run directory."""
    if config.source.kind == "demo":
        from flywheel.demo.generator import generate_demo

        folder = demo_world_dir(config, run.runs_root)
        if not (folder / "logs.jsonl").exists():  # generated once, then reused by every cycle like it
            generate_demo(
                folder,
                experts=config.experts,
                n_interactions=config.source.n_interactions,
                weeks=config.source.weeks,
                start=config.source.start,
                seed=config.seed,
            )
        truth = folder / "hidden_truth.jsonl"
        source = run.manifest().get("source", {})
        run.update_manifest(
            source={**source, "kind": "demo", "folder": str(folder), "hidden_truth": input_hashes([truth])}
        )
        return [folder / "logs.jsonl"]
    return log_files(source_paths(config, run))


def input_hashes(files: list[Path]) -> dict[str, str]:
    """Absolute path -> sha256 of each input file: what the manifest keeps instead of a copy."""
    return {str(Path(path).resolve()): file_sha256(path) for path in files}
