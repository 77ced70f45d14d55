"""Log files named in the config (entry point `files` in `flywheel.log_sources`; the demo world is the
other built-in source, `flywheel.demo.source`). Raw logs are read where they are, never copied into a run."""

from __future__ import annotations

from pathlib import Path

from flywheel.collect.ingest import log_files
from flywheel.core.config import Config
from flywheel.core.runs import RunDir


def source_paths(config: Config, run: RunDir) -> list[Path]:
    """The configured `source.paths`, absolute: as resolved when the cycle was created (the manifest's
    `source.paths`), else from the current folder."""
    recorded = run.manifest().get("source", {}).get("paths")
    return [Path(p) for p in recorded] if recorded else config.source.resolved_paths(Path.cwd())


class FilesSource:
    """JSONL/Parquet files or folders (`source.paths`): real logs, with no hidden truth and no simulated
    experts."""

    def log_files(self, config: Config, run: RunDir) -> list[Path]:
        return log_files(source_paths(config, run))

    def hidden_truth(self, run: RunDir) -> None:
        return None

    def simulated_panel(self, config: Config, run: RunDir, task: str = "triage") -> None:
        return None
