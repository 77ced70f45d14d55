"""One flywheel cycle: the numbered notebooks executed headless by papermill into a run directory."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flywheel.config import REPO_ROOT, load_config
from flywheel.runs import STAGES, RunDir, atomic_write_text, git_commit, now_iso, package_versions

NOTEBOOKS = {
    "01_collect": "notebooks/01_collect/collect.ipynb",
    "02_triage": "notebooks/02_triage/triage.ipynb",
    "03_finetune": "notebooks/03_finetune/finetune.ipynb",
    "04_eval": "notebooks/04_eval/eval.ipynb",
}
DEFAULT_KERNEL = "flywheel"


class StageFailed(RuntimeError):
    """A notebook failed; the message names it and where its executed copy is."""


def hardware() -> dict:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"cpu_count": os.cpu_count(), "machine": platform.machine(), "gpus": gpus}


def create_run(
    config_path: str | Path, run_path: str | Path | None = None, runs_root: str | Path = "runs"
) -> RunDir:
    """Make a new run directory holding a copy of the config and a fresh manifest."""
    config_path = Path(config_path)
    config = load_config(config_path)  # fail early on a bad config, before anything is written
    if run_path is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        run_path = Path(runs_root) / f"{stamp}-{config.name}"
        suffix = 1
        while run_path.exists():  # two cycles started in the same second
            suffix += 1
            run_path = Path(runs_root) / f"{stamp}-{config.name}-{suffix}"
    run = RunDir(run_path)
    run.path.mkdir(parents=True, exist_ok=False)
    shutil.copyfile(config_path, run.config_path)
    run.update_manifest(
        cycle_id=run.cycle_id,
        created_at=now_iso(),
        status="created",
        config_source=str(config_path.resolve()),
        config=config.model_dump(mode="json"),
        seed=config.seed,
        git_commit=git_commit(),
        python=sys.version.split()[0],
        packages=package_versions(),
        hardware=hardware(),
        stages={stage: {"status": "pending", "notebook": NOTEBOOKS[stage]} for stage in STAGES},
    )
    return run


def _check_kernel(kernel_name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise RuntimeError(
            f"Jupyter kernel {kernel_name!r} is not installed; `make setup` registers it "
            f"(python -m ipykernel install --sys-prefix --name {kernel_name})"
        ) from None


def run_stage(run: RunDir, stage: str, kernel_name: str, progress: bool = True) -> float:
    """Execute one stage's notebook into the run directory; return its wall time in seconds."""
    import papermill as pm

    source = REPO_ROOT / NOTEBOOKS[stage]
    executed = run.path / "notebooks" / f"{stage}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    run.set_stage(stage, status="running", started_at=now_iso(), executed=str(executed.relative_to(run.path)))
    started = time.perf_counter()
    try:
        pm.execute_notebook(
            str(source),
            str(executed),
            parameters={"run_dir": str(run.path), "config_path": str(run.config_path)},
            kernel_name=kernel_name,
            cwd=str(source.parent),
            progress_bar=progress,
            request_save_on_cell_execute=True,
        )
    except pm.PapermillExecutionError as err:
        seconds = time.perf_counter() - started
        message = f"{err.ename}: {err.evalue}"
        run.set_stage(stage, status="failed", seconds=round(seconds, 1), error=message, cell=err.exec_count)
        run.update_manifest(status="failed")
        raise StageFailed(
            f"stage {stage} failed in {NOTEBOOKS[stage]} (cell {err.exec_count}): {message}\n"
            f"executed notebook: {executed}"
        ) from None
    seconds = time.perf_counter() - started
    status = run.manifest()["stages"][stage].get("status")
    # A notebook may pause the cycle itself (e.g. triage awaiting expert review).
    final = status if status not in ("running", None) else "done"
    peak = run.results(stage).get("peak_rss_mb") if run.results_path(stage).exists() else None
    run.set_stage(stage, status=final, finished_at=now_iso(), seconds=round(seconds, 1), peak_rss_mb=peak)
    return seconds


def run_cycle(
    config_path: str | Path | None = None,
    resume: str | Path | None = None,
    runs_root: str | Path = "runs",
    kernel_name: str | None = None,
    stages: tuple[str, ...] = STAGES,
    log: Callable[[str], None] = print,
) -> RunDir:
    """Run (or resume) a cycle. A stage that finished is not redone; a failure raises StageFailed."""
    kernel_name = kernel_name or os.environ.get("FLYWHEEL_KERNEL", DEFAULT_KERNEL)
    _check_kernel(kernel_name)
    if resume:
        run = RunDir(resume)
        if not run.manifest_path.is_file():
            raise FileNotFoundError(f"cannot resume: no manifest.json in {run.path}")
        load_config(run.config_path)  # the config the cycle started with
    else:
        run = create_run(config_path or REPO_ROOT / "configs" / "demo.yaml", runs_root=runs_root)
    log(f"cycle {run.cycle_id} in {run.path}")
    run.update_manifest(status="running")
    cycle_started = time.perf_counter()
    # The embedded Argilla server (triage) is stopped at the end if this cycle started it.
    from flywheel.triage.argilla_server import stopped_after_if_started

    paused = lambda: run.manifest().get("status") == "awaiting_review"  # noqa: E731
    with stopped_after_if_started(log, keep=paused):
        for index, stage in enumerate(stages, start=1):
            status = run.stage_status(stage)
            if status == "done":
                log(f"[{index}/{len(stages)}] {stage}: done earlier, skipped")
                continue
            log(f"[{index}/{len(stages)}] {stage}: running {NOTEBOOKS[stage]}")
            seconds = run_stage(run, stage, kernel_name)
            status = run.stage_status(stage)
            log(f"[{index}/{len(stages)}] {stage}: {status} in {seconds:.1f} s")
            if status != "done":  # paused, e.g. awaiting_review: resume later with --resume
                run.update_manifest(status=status)
                log(f"cycle paused ({status}); continue with: flywheel cycle --resume {run.path}")
                return run
    if run.stage_status("04_eval") == "done":
        log(f"report: {export_report(run)}")
    seconds = time.perf_counter() - cycle_started
    manifest = run.update_manifest(status="complete", finished_at=now_iso())
    total = sum(s.get("seconds", 0) for s in manifest["stages"].values())
    log(f"cycle complete: this invocation {seconds:.1f} s, all stages {total:.1f} s")
    return run


def export_report(run: RunDir, stage: str = "04_eval") -> Path:
    """The executed eval notebook as a standalone HTML report (code hidden) in the run directory."""
    import nbformat
    from nbconvert import HTMLExporter

    executed = run.path / "notebooks" / f"{stage}.ipynb"
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    path = run.path / "report.html"
    atomic_write_text(path, body)
    return path
