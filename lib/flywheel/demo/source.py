"""The demo world as a log source (entry point `demo` in `flywheel.log_sources`).

Its logs are generated (seeded) beside the runs, in `<runs root>/demo-worlds/<config name>-<digest>/`, one
folder per set of generator arguments, generated once and reused; never inside a run directory (raw logs
with planted PII). Unlike real logs, the demo knows the truth behind them: the hidden truth scores the judges
(labelled as such) and drives the simulated expert panel of `review.mode: simulate`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from flywheel.core.config import Config, load_config
from flywheel.core.log_sources import input_hashes
from flywheel.core.runs import RunDir
from flywheel.demo.generator import GENERATOR_VERSION, generate_demo
from flywheel.demo.panel import SimulatedPanel

DEMO_WORLDS = "demo-worlds"
LEGACY_DEMO_FOLDER = "demo_world"  # inside the run directory, before raw logs were kept out of it


def demo_world_dir(config: Config, runs_root: Path) -> Path:
    """Where the demo world of this config lives: keyed by everything the generator reads."""
    source = config.source
    key = [GENERATOR_VERSION, config.experts, source.n_interactions, source.weeks, source.start, config.seed]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(runs_root).resolve() / DEMO_WORLDS / f"{config.name}-{digest}"


class DemoSource:
    def log_files(self, config: Config, run: RunDir) -> list[Path]:
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

    def hidden_truth(self, run: RunDir) -> Path:
        legacy = run.path / LEGACY_DEMO_FOLDER / "hidden_truth.jsonl"
        if legacy.is_file():  # a run created before the demo world moved out of run directories
            return legacy
        return demo_world_dir(load_config(run.config_path), run.runs_root) / "hidden_truth.jsonl"

    def simulated_panel(self, config: Config, run: RunDir, task: str = "triage") -> SimulatedPanel:
        """The panel for one review task: as many simulated experts as that task asks per record."""
        review = config.review
        size = config.audit.experts_per_record if task == "audit" else review.experts_per_record
        return SimulatedPanel(
            self.hidden_truth(run),
            list(config.experts),
            review.simulated_error_rate,
            seed=config.seed,
            size=size,
        )
