"""The `flywheel` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from flywheel.core.config import REPO_ROOT, load_config

app = typer.Typer(
    help="Research workbench for LLM data flywheels.", no_args_is_help=True, add_completion=False
)

DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="cycle config (YAML)")]


@app.command("demo-data")
def demo_data(
    out: Annotated[
        Path, typer.Option(help="folder for logs.jsonl, hidden_truth.jsonl, demo_meta.json")
    ] = Path("runs/demo_data"),
    config: ConfigOption = DEFAULT_CONFIG,
    n: Annotated[int | None, typer.Option(help="interactions (default: from the config)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed (default: from the config)")] = None,
) -> None:
    """Generate the synthetic demo logs (seeded, deterministic)."""
    from flywheel.demo.generator import generate_demo  # here, not at the top: keeps start-up light

    cfg = load_config(config)
    meta = generate_demo(
        out,
        experts=cfg.experts,
        n_interactions=n or cfg.source.n_interactions,
        weeks=cfg.source.weeks,
        start=cfg.source.start,
        seed=cfg.seed if seed is None else seed,
    )
    typer.echo(json.dumps({"out": str(out), **meta.get("counts", {})}))


@app.command()
def cycle(
    config: ConfigOption = DEFAULT_CONFIG,
    resume: Annotated[Path | None, typer.Option(help="continue this run directory")] = None,
    runs_dir: Annotated[Path, typer.Option(help="where run directories are created")] = Path("runs"),
    kernel: Annotated[str | None, typer.Option(help="Jupyter kernel for papermill")] = None,
) -> None:
    """Run the numbered notebooks in order into runs/<cycle-id>/; prints the run directory last.

    Relative source.paths are taken from the current folder. Exit status: 0 complete, 1 a stage failed,
    3 paused awaiting expert review (resume with --resume when the experts are done)."""
    # here, not at the top: the runner pulls in papermill, which every other command would pay for
    from flywheel.cycle import AWAITING_REVIEW, EXIT_AWAITING_REVIEW, StageFailed, run_cycle

    try:
        run = run_cycle(config, resume=resume, runs_root=runs_dir, kernel_name=kernel, log=typer.echo)
    except StageFailed as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(str(run.path))
    if run.manifest().get("status") == AWAITING_REVIEW:
        raise typer.Exit(EXIT_AWAITING_REVIEW)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="JSONL/Parquet files or folders")],
    store: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: the config's store)")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    runs_dir: Annotated[Path, typer.Option()] = Path("runs"),
) -> None:
    """Ingest log files into the store; prints one JSON line of counts."""
    # here, not at the top: ingestion loads spaCy and SQLAlchemy, which other commands don't need
    from flywheel.collect.ingest import ingest_with_config
    from flywheel.core.store import Store

    cfg = load_config(config)
    url = store or cfg.store_url(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    report = ingest_with_config(Store(url), paths, cfg, progress=sys.stderr.isatty())
    typer.echo(json.dumps(report.as_dict()))


# Stage commands defined in their own modules are registered here, one line each.
from flywheel.argilla.server import app as argilla_app  # noqa: E402

app.add_typer(argilla_app, name="argilla")
from flywheel.triage.review import review_cli  # noqa: E402  (review import)

app.add_typer(review_cli(), name="review")
from flywheel.serve.cli import register as register_serve  # noqa: E402  (serve, promote)

register_serve(app)
from flywheel.collect.status import register as register_status  # noqa: E402  (status)

register_status(app)
from flywheel.weeks.cli import register as register_weeks  # noqa: E402  (run)

register_weeks(app)

if __name__ == "__main__":
    app()
