"""`flywheel run`: the multi-week flywheel simulation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flywheel.core.config import REPO_ROOT


def run(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="flywheel config (YAML with `flywheel:`)")
    ] = (REPO_ROOT / "configs" / "flywheel.yaml"),
    runs_dir: Annotated[Path, typer.Option(help="where runs/flywheel-<id>/ is created")] = Path("runs"),
    resume: Annotated[
        Path | None,
        typer.Option(
            help="a stopped flywheel's folder: go on from its last complete week, with its own config"
        ),
    ] = None,
) -> None:
    """Simulate weeks of traffic through the real parts: serve, collect feedback, run cycles when
    `flywheel status` says so, gate and promote; prints the flywheel's folder last. A killed run goes on with
    --resume (a week under way is delivered again without asking twice, its cycle resumed)."""
    # here, not at the top: the runner pulls in papermill, the web service and the demo world
    from flywheel.weeks.runner import FlywheelError, run_flywheel

    try:
        folder = run_flywheel(config, runs_dir, log=typer.echo, resume=resume)
    except FlywheelError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(str(folder))


def register(app: typer.Typer) -> None:
    app.command("run")(run)
