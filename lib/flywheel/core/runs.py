"""The run directory of one cycle: its creation, manifest, per-stage results and artifacts.

Layout of `runs/<cycle-id>/`:
    manifest.json        config, git commit, package versions, input hashes, seed, per-stage status/timings
    config.yaml          the config the cycle ran with
    notebooks/           the executed notebooks; <stage>.attempt-N.ipynb: an earlier failed or paused attempt
    results/<stage>.json what each notebook recorded (through `record_results`); .attempt-N.json: earlier
    artifacts/           datasets, models, predictions, metrics
    plots/               PNG figures
    summary.json         baseline and candidates, the promoted model

Raw input logs are never copied in (the directory is meant to be shared): the manifest records their
absolute paths and sha256 (`inputs`, `source`).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from flywheel.core.config import REPO_ROOT, config_text, load_config
from flywheel.core.files import atomic_write_json, read_json
from flywheel.core.memory import peak_rss_mb

STAGES = ("01_collect", "02_triage", "03_finetune", "04_eval")
NOTEBOOKS = {
    "01_collect": "notebooks/01_collect/collect.ipynb",
    "02_triage": "notebooks/02_triage/triage.ipynb",
    "03_finetune": "notebooks/03_finetune/finetune.ipynb",
    "04_eval": "notebooks/04_eval/eval.ipynb",
}
TRACKED_PACKAGES = (
    "flywheel",
    "torch",
    "transformers",
    "peft",
    "trl",
    "datasets",
    "accelerate",
    "papermill",
    "scikit-learn",
    "statsmodels",
    "SQLAlchemy",
    "argilla",
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class RunDir:
    """A cycle's run directory. Notebooks open it by path; the cycle runner creates it."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()

    # --- locations -------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def cycle_id(self) -> str:
        return self.path.name

    @property
    def runs_root(self) -> Path:
        return self.path.parent

    def artifact(self, *parts: str) -> Path:
        """Path of an artifact; its folder is created."""
        path = self.path.joinpath("artifacts", *parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def plot(self, name: str) -> Path:
        path = self.path / "plots" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def results_path(self, stage: str) -> Path:
        return self.path / "results" / f"{stage}.json"

    # --- manifest --------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        return read_json(self.manifest_path) if self.manifest_path.exists() else {}

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        manifest = self.manifest()
        manifest.update(fields)
        atomic_write_json(self.manifest_path, manifest)
        return manifest

    def set_stage(self, stage: str, **fields: Any) -> None:
        manifest = self.manifest()
        stages = manifest.setdefault("stages", {})
        stages.setdefault(stage, {}).update(fields)
        atomic_write_json(self.manifest_path, manifest)

    def stage_status(self, stage: str) -> str:
        return self.manifest().get("stages", {}).get(stage, {}).get("status", "pending")

    def record_review(self, review: dict[str, Any]) -> dict[str, Any]:
        """Merge `review` into the manifest's `review` section. Push and pull counts add up over the triage
        stage's attempts (a resumed triage pushes nothing new: the pause did); each attempt's own counts
        are kept under `attempts`."""
        manifest = self.manifest()
        previous = manifest.get("review") or {}
        merged = {**previous, **review}
        for part, count in (("push", "records"), ("pull", "answers_added")):
            if part not in review:
                continue
            earlier = dict(previous.get(part) or {})
            attempts = earlier.pop("attempts", None) or ([earlier] if earlier else [])
            attempts = [*attempts, {**review[part], "at": now_iso()}]
            busiest = next((a for a in reversed(attempts) if a.get(count)), attempts[-1])
            total = sum(a.get(count) or 0 for a in attempts)
            merged[part] = {**busiest, count: total, "attempts": attempts}
        manifest["review"] = merged
        atomic_write_json(self.manifest_path, manifest)
        return merged

    # --- results ---------------------------------------------------------------------------------
    def record_results(self, stage: str, results: dict[str, Any]) -> Path:
        """The one helper every notebook ends with: its results as JSON in the run directory.

        Adds the peak memory of the process so far: in a cycle that is the stage's own kernel."""
        path = self.results_path(stage)
        record = {"stage": stage, "recorded_at": now_iso(), "peak_rss_mb": round(peak_rss_mb(), 1), **results}
        atomic_write_json(path, record)
        return path

    def results(self, stage: str) -> dict[str, Any]:
        path = self.results_path(stage)
        if not path.exists():
            raise FileNotFoundError(f"stage {stage} has recorded no results in {self.path}; run it first")
        return read_json(path)


def hardware() -> dict:
    import torch  # imported here: torch takes seconds to import and only run creation needs it

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"cpu_count": os.cpu_count(), "machine": platform.machine(), "gpus": gpus}


def create_run(
    config_path: str | Path,
    run_path: str | Path | None = None,
    runs_root: str | Path = "runs",
    source_base: str | Path | None = None,
) -> RunDir:
    """Make a new run directory holding a copy of the config and a fresh manifest.

    Relative `source.paths` are resolved against `source_base` (default: the current folder, i.e. where
    `flywheel cycle` was started) and recorded absolute in the manifest, which the collect stage reads."""
    config_path = Path(config_path)
    config = load_config(config_path)  # fail early on a bad config, before anything is written
    source = {"kind": config.source.kind}
    if config.source.kind == "files":
        base = Path(source_base or Path.cwd()).resolve()
        paths = config.source.resolved_paths(base)
        pairs = zip(config.source.paths, paths, strict=True)
        missing = [f"{given!r} ({path})" for given, path in pairs if not path.exists()]
        if missing:
            raise FileNotFoundError(
                f"source.paths in {config_path}: not found: {', '.join(missing)} "
                f"(relative paths are taken from the folder the cycle was started in, {base})"
            )
        source.update(base=str(base), paths=[str(path) for path in paths])
    if run_path is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        run_path = Path(runs_root) / f"{stamp}-{config.name}"
        suffix = 1
        while run_path.exists():  # two cycles started in the same second
            suffix += 1
            run_path = Path(runs_root) / f"{stamp}-{config.name}-{suffix}"
    run = RunDir(run_path)
    run.path.mkdir(parents=True, exist_ok=False)
    run.config_path.write_text(config_text(config_path))  # an overlay (`extends`) resolved
    run.update_manifest(
        cycle_id=run.cycle_id,
        created_at=now_iso(),
        status="created",
        config_source=str(config_path.resolve()),
        config=config.model_dump(mode="json"),
        source=source,
        seed=config.seed,
        git_commit=git_commit(),
        python=sys.version.split()[0],
        packages=package_versions(),
        hardware=hardware(),
        stages={stage: {"status": "pending", "notebook": NOTEBOOKS[stage]} for stage in STAGES},
    )
    return run


def open_or_create_run(run_dir: str | Path | None, config_path: str | Path | None = None) -> RunDir:
    """Open the run directory a notebook was given.

    An empty value is interactive use in JupyterLab: the notebooks then share `runs/interactive/`,
    created from `config_path` (default: the demo config) on first use.
    """
    if run_dir:
        run = RunDir(run_dir)
        if not run.manifest_path.is_file():
            raise FileNotFoundError(f"not a run directory (no manifest.json): {run.path}")
        return run
    interactive = RunDir(REPO_ROOT / "runs" / "interactive")
    if interactive.manifest_path.is_file():
        return interactive
    # Relative source paths: from the repository root, as for `make cycle` (JupyterLab runs a notebook in
    # its own folder).
    config_path = config_path or REPO_ROOT / "configs" / "demo.yaml"
    return create_run(config_path, interactive.path, source_base=REPO_ROOT)
