"""What every stage notebook opens first: its run directory, the cycle's config and the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flywheel.core.config import Config, load_config
from flywheel.core.runs import RunDir, open_or_create_run
from flywheel.core.store import Store


@dataclass
class StageContext:
    run: RunDir
    config: Config
    store: Store

    @property
    def experts(self) -> list[str]:
        return list(self.config.experts)


def open_stage(run_dir: str | Path | None, config_path: str | Path | None = None) -> StageContext:
    """Open the run (a scratch one in JupyterLab when run_dir is empty) with its config and store."""
    run = open_or_create_run(run_dir, config_path)
    config = load_config(run.config_path)
    return StageContext(run, config, Store(config.store_url(run.runs_root)))
