"""One flywheel cycle: the numbered notebooks executed headless by papermill into a run directory."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from flywheel.argilla import server as argilla_server
from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.context import open_stage
from flywheel.core.files import atomic_write_text
from flywheel.core.results import CollectResult, EvalResult, FinetuneResult, TriageResult, read_result
from flywheel.core.runs import NOTEBOOKS, STAGES, RunDir, create_run, now_iso
from flywheel.core.sharing import shareable_text
from flywheel.core.tracking import CycleTracker
from flywheel.triage.review import AWAITING_REVIEW, awaiting_review, open_review

DEFAULT_KERNEL = "flywheel"
EXIT_AWAITING_REVIEW = 3  # `flywheel cycle` exit status of a cycle paused for (or still awaiting) review
STAGE_RESULTS = {kind.stage: kind for kind in (CollectResult, TriageResult, FinetuneResult, EvalResult)}


class StageFailed(RuntimeError):
    """A notebook failed; the message names it and where its executed copy is."""


def _check_kernel(kernel_name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise RuntimeError(
            f"Jupyter kernel {kernel_name!r} is not installed; `make setup` registers it "
            f"(python -m ipykernel install --sys-prefix --name {kernel_name})"
        ) from None


def _earlier_attempts(run: RunDir, stage: str) -> list[dict]:
    """The stage's attempts so far; its earlier executed notebook and results are moved aside
    (`<stage>.attempt-N.*`) so that the next attempt keeps them, tracebacks included."""
    entry = run.manifest().get("stages", {}).get(stage, {})
    attempts = [dict(a) for a in entry.get("attempts", [])]
    if not attempts and entry.get("started_at"):  # a manifest written before attempts were kept
        keys = ("started_at", "finished_at", "seconds", "status", "error", "cell", "peak_rss_mb")
        attempts = [{"attempt": 1, **{k: entry[k] for k in keys if k in entry}}]
    if attempts:
        last = attempts[-1]
        number = last.get("attempt", len(attempts))
        earlier = {"notebook": run.path / "notebooks" / f"{stage}.ipynb", "results": run.results_path(stage)}
        for key, current in earlier.items():
            if current.is_file():
                kept = current.with_name(f"{stage}.attempt-{number}{current.suffix}")
                os.replace(current, kept)
                last[key] = str(kept.relative_to(run.path))
    return attempts


def run_stage(run: RunDir, stage: str, kernel_name: str, progress: bool = True) -> float:
    """Execute one stage's notebook into the run directory; return this attempt's wall time in seconds.

    Every attempt is kept in the manifest (`stages.<stage>.attempts`: started, finished, seconds, status,
    notebook, error); `seconds` of the stage is the sum over its attempts."""
    import papermill as pm

    source = REPO_ROOT / NOTEBOOKS[stage]
    executed = run.path / "notebooks" / f"{stage}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    attempts = _earlier_attempts(run, stage)
    attempt = {
        "attempt": len(attempts) + 1,
        "started_at": now_iso(),
        "status": "running",
        "notebook": str(executed.relative_to(run.path)),
    }
    attempts.append(attempt)
    run.set_stage(stage, status="running", started_at=attempt["started_at"], executed=attempt["notebook"])
    run.set_stage(stage, attempts=attempts)
    started = time.perf_counter()

    def finish(status: str, error: str | None = None, cell: int | None = None, peak: float | None = None):
        seconds = round(time.perf_counter() - started, 1)
        outcome = {"error": error, "cell": cell, "peak_rss_mb": peak}
        attempt.update(status=status, finished_at=now_iso(), seconds=seconds)
        attempt.update({k: v for k, v in outcome.items() if v is not None})
        total = round(sum(a.get("seconds") or 0 for a in attempts), 1)
        finished = attempt["finished_at"]
        # the stage's error and cell are its latest attempt's (None once it succeeded)
        run.set_stage(stage, status=status, finished_at=finished, seconds=total, attempts=attempts, **outcome)
        return seconds

    try:
        pm.execute_notebook(
            str(source),
            str(executed),
            parameters={"run_dir": str(run.path), "config_path": str(run.config_path)},
            kernel_name=kernel_name,
            cwd=str(source.parent),
            progress_bar=progress,
            request_save_on_cell_execute=True,
            # The cells have written everything (results, store, run files) when the last one returns; a
            # graceful shutdown only waits ~2.5 s per stage for the kernel's interpreter to tear down.
            shutdown_kernel="immediate",
        )
    except Exception as err:  # a failing cell, or a kernel that died: the attempt is recorded either way
        cell = getattr(err, "exec_count", None)
        if isinstance(err, pm.PapermillExecutionError):
            message = f"{err.ename}: {err.evalue}"
        else:
            message = f"{type(err).__name__}: {err}"
        finish("failed", error=message, cell=cell)
        run.update_manifest(status="failed")
        raise StageFailed(
            f"stage {stage} failed in {NOTEBOOKS[stage]} (cell {cell}): {message}\n"
            f"executed notebook: {executed}"
        ) from None
    status = run.manifest()["stages"][stage].get("status")
    # A notebook may pause the cycle itself (e.g. triage awaiting expert review).
    final = status if status not in ("running", None) else "done"
    peak = read_result(run, STAGE_RESULTS[stage]).peak_rss_mb if run.results_path(stage).exists() else None
    return finish(final, peak=peak)


def review_waiting_line(run: RunDir) -> str:
    """How far the experts are and where they answer, from the manifest's `review` section."""
    review = run.manifest().get("review") or {}
    progress, argilla = review.get("progress") or {}, review.get("argilla") or {}
    line = (
        f"awaiting expert review: {progress.get('completed', 0)} of {progress.get('total', 0)} records "
        f"answered in Argilla at {argilla.get('url', '?')}, dataset {argilla.get('dataset')!r} "
        f"(workspace {argilla.get('workspace')!r})"
    )
    audit = run.manifest().get("audit") or {}
    if audit.get("progress"):
        audit_progress, audit_argilla = audit["progress"], audit.get("argilla") or {}
        line += (
            f"; audit: {audit_progress.get('completed', 0)} of {audit_progress.get('total', 0)} records, "
            f"dataset {audit_argilla.get('dataset')!r}"
        )
    if argilla.get("credentials"):
        line += f"; log in with the credentials in {argilla['credentials']}"
    return f"{line}. When the experts are done: flywheel cycle --resume {run.path}"


def _review_still_awaited(run: RunDir, log: Callable[[str], None]) -> bool:
    """Before re-running a paused triage: are records still unanswered? Asks Argilla for the progress
    (starting the embedded server if it is down) and records it; re-running the notebook then waits."""
    stage = open_stage(run.path)
    session = open_review(stage.config, stage.store, log=log)
    progress = session.progress()
    audit_progress = open_review(stage.config, stage.store, log=log, task="audit").progress()
    manifest = run.manifest()
    review, audit = manifest.get("review") or {}, manifest.get("audit") or {}
    run.update_manifest(
        review={
            **review,
            "argilla": session.target.describe(),
            "progress": progress,
            "checked_at": now_iso(),
        },
        audit={**audit, "progress": audit_progress, "checked_at": now_iso()},
    )
    return any(awaiting_review(stage.config.review.mode, p) for p in (progress, audit_progress))


@contextlib.contextmanager
def _embedded_argilla_accounted(run: RunDir, log: Callable[[str], None]) -> Iterator[None]:
    """Stop the embedded Argilla server at the end if this cycle started it, in this invocation or in an
    earlier one that paused for review (the manifest's `services.argilla` says so); otherwise say plainly
    that it is still running and how to stop it. A paused cycle leaves it up for the experts."""
    was_running = argilla_server.is_running()
    try:
        yield
    finally:
        state = argilla_server.status()
        services = run.manifest().get("services") or {}
        record = dict(services.get("argilla") or {})
        if state["running"] and not was_running:
            record.update(started_by_cycle=True, url=state["url"], started_at=now_iso())
            record.pop("stopped_at", None)
        ours = bool(record.get("started_by_cycle")) and not record.get("stopped_at")
        paused = run.manifest().get("status") == AWAITING_REVIEW
        if not state["running"]:
            pass
        elif paused:
            who = "this cycle started it; the resumed cycle stops it" if ours else "it was running before"
            log(
                f"the embedded Argilla server stays up for the experts at {state['url']} ({who}; "
                "`flywheel argilla down` stops it)"
            )
        elif ours:
            log(f"stopping the embedded Argilla server that this cycle started ({state['url']})")
            argilla_server.down()
            record["stopped_at"] = now_iso()
        else:
            log(
                f"the embedded Argilla server is still running at {state['url']} (it was running before this "
                "cycle started); `flywheel argilla down` stops it"
            )
        if record:
            run.update_manifest(services={**services, "argilla": record})


def run_cycle(
    config_path: str | Path | None = None,
    resume: str | Path | None = None,
    runs_root: str | Path = "runs",
    kernel_name: str | None = None,
    stages: tuple[str, ...] = STAGES,
    log: Callable[[str], None] = print,
) -> RunDir:
    """Run (or resume) a cycle. A stage that finished is not redone; a failure raises StageFailed.
    A cycle paused for expert review returns with manifest status `awaiting_review`."""
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
    tracker = CycleTracker(run, log)  # MLflow: logs each stage's record once it is done; never raises
    tracker.start()
    cycle_started = time.perf_counter()
    with _embedded_argilla_accounted(run, log):
        for index, stage in enumerate(stages, start=1):
            status = run.stage_status(stage)
            if status == "done":
                log(f"[{index}/{len(stages)}] {stage}: done earlier, skipped")
                tracker.stage_done(stage)  # a no-op when it was logged before
                continue
            if status == AWAITING_REVIEW and _review_still_awaited(run, log):
                run.update_manifest(status=AWAITING_REVIEW)
                tracker.paused(AWAITING_REVIEW)
                log(f"[{index}/{len(stages)}] {stage}: still {review_waiting_line(run)}")
                return run
            log(f"[{index}/{len(stages)}] {stage}: running {NOTEBOOKS[stage]}")
            try:
                seconds = run_stage(run, stage, kernel_name)
            except StageFailed as err:
                tracker.stage_failed(stage, str(err))
                raise
            status = run.stage_status(stage)
            log(f"[{index}/{len(stages)}] {stage}: {status} in {seconds:.1f} s")
            if status == "done":
                tracker.stage_done(stage)
            else:  # paused, e.g. awaiting_review: resume later with --resume
                run.update_manifest(status=status)
                tracker.paused(status)
                if status == AWAITING_REVIEW:
                    log(f"cycle paused: {review_waiting_line(run)}")
                else:
                    log(f"cycle paused ({status}); continue with: flywheel cycle --resume {run.path}")
                return run
    if run.stage_status("04_eval") == "done":
        report = export_report(run)
        tracker.report(report)
        log(f"report: {report}")
    seconds = time.perf_counter() - cycle_started
    manifest = run.update_manifest(status="complete", finished_at=now_iso())
    tracker.finish()
    total = sum(s.get("seconds", 0) for s in manifest["stages"].values())
    log(f"cycle complete: this invocation {seconds:.1f} s, all stages {total:.1f} s")
    return run


def export_report(run: RunDir, stage: str = "04_eval") -> Path:
    """The executed eval notebook as a standalone HTML report in the run directory, for sharing: code hidden,
    no kernel stderr (warnings carry the machine's paths), no progress widgets (they render as stale text),
    and no machine paths (the run directory's own path becomes `.`, the home folder `~`)."""
    import nbformat
    from nbconvert import HTMLExporter

    executed = run.path / "notebooks" / f"{stage}.ipynb"
    book = nbformat.read(executed, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            cell.outputs = [output for output in cell.outputs if _for_readers(output)]
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(book, resources={"metadata": {"name": f"Cycle {run.cycle_id}"}})
    path = run.path / "report.html"
    atomic_write_text(path, shareable_text(body, run.path))
    return path


def _for_readers(output: dict) -> bool:
    """An output a reader of the report should see: not stderr, not a progress widget."""
    if output.get("output_type") == "stream":
        return output.get("name") != "stderr"
    return "application/vnd.jupyter.widget-view+json" not in output.get("data", {})
