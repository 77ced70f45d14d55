"""Logs replayed from a folder that also holds their truth (entry point `replay` in `flywheel.log_sources`).

For checking the workbench on real text: a public labelled set converted into router logs
(`bench/real_text.py`) is a folder with `logs.jsonl` and `hidden_truth.jsonl`. Its logs are read like the
`files` source's; like the demo, its hidden truth scores the judges and the models (labelled as such) and
drives the simulated expert panel of `review.mode: simulate`. `source.paths[0]` is the folder; a relative one
is taken from where the cycle was started (the manifest's `source.base`), else from the repository root,
since notebooks run in their own folders.
"""

from __future__ import annotations

from pathlib import Path

from flywheel.core.config import REPO_ROOT, Config, load_config
from flywheel.core.log_sources import input_hashes
from flywheel.core.runs import RunDir
from flywheel.demo.panel import SimulatedPanel

LOGS, TRUTH = "logs.jsonl", "hidden_truth.jsonl"


def replay_folder(config: Config, run: RunDir) -> Path:
    """The folder this run replays: as recorded in its manifest once read, else from `source.paths[0]`."""
    source = run.manifest().get("source", {})
    if source.get("kind") == "replay" and source.get("folder"):
        return Path(source["folder"])
    if not config.source.paths:
        raise ValueError(
            "source.kind=replay needs source.paths: [a folder with logs.jsonl and hidden_truth.jsonl]"
        )
    folder = Path(config.source.paths[0]).expanduser()
    if not folder.is_absolute():
        folder = Path(source.get("base") or REPO_ROOT) / folder
    return folder.resolve()


class ReplaySource:
    def log_files(self, config: Config, run: RunDir) -> list[Path]:
        folder = replay_folder(config, run)
        missing = [name for name in (LOGS, TRUTH) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"source.kind=replay: {', '.join(missing)} not in {folder} "
                "(write it first, e.g. `python bench/real_text.py`)"
            )
        source = run.manifest().get("source", {})
        run.update_manifest(
            source={
                **source,
                "kind": "replay",
                "folder": str(folder),
                "hidden_truth": input_hashes([folder / TRUTH]),
            }
        )
        return [folder / LOGS]

    def hidden_truth(self, run: RunDir) -> Path:
        return replay_folder(load_config(run.config_path), run) / TRUTH

    def simulated_panel(self, config: Config, run: RunDir, task: str = "triage") -> SimulatedPanel:
        """The panel for one review task (as the demo's): as many simulated experts as it asks per record."""
        size = config.audit.experts_per_record if task == "audit" else config.review.experts_per_record
        return SimulatedPanel(
            self.hidden_truth(run),
            list(config.experts),
            config.review.simulated_error_rate,
            seed=config.seed,
            size=size,
        )
