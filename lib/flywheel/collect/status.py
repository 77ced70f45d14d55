"""`flywheel status`: should a new cycle run? One JSON object on stdout, for a scheduler.

`should_run` is true when enough explicit feedback reached the store since the last cycle collected
(`collect.drift.min_new_feedback`) or the drift monitor flags a window newer than that cycle's data.
The exit code is 0 either way (non-zero only on an error), unless `--exit-code` asks for 0 = run,
1 = nothing to do, as `if flywheel status --exit-code; then make cycle; fi` wants.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flywheel.core.config import REPO_ROOT, load_config


def status(
    config: Annotated[Path, typer.Option("--config", "-c", help="cycle config (YAML)")] = Path(
        "configs/demo.yaml"
    ),
    store: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: the config's store)")] = None,
    runs_dir: Annotated[Path, typer.Option(help="where the default SQLite store lives")] = Path("runs"),
    exit_code: Annotated[bool, typer.Option("--exit-code", help="exit 1 when no cycle is needed")] = False,
) -> None:
    """Print whether a new cycle should run (new feedback since the last cycle, or drift)."""
    # imported here: `flywheel` registers this command at start-up, and these pull in statsmodels/SQLAlchemy
    from flywheel.collect.drift import cycle_status
    from flywheel.core.store import Store

    if not config.exists() and (REPO_ROOT / config).exists():
        config = REPO_ROOT / config
    cfg = load_config(config)
    result = cycle_status(Store(store or cfg.store_url(runs_dir)), cfg.collect)
    typer.echo(json.dumps(result))
    if exit_code and not result["should_run"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
