"""`flywheel serve` (the router service) and `flywheel promote` (the promotion registry)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.registry import Registry, RegistryError, default_export_path
from flywheel.core.store import Store

DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="cycle config (YAML)")]
StoreOption = Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: the config's store)")]
RunsOption = Annotated[Path, typer.Option(help="runs folder (the default store and the registry export)")]


def _registry(config: Path, store: str | None, runs_dir: Path):
    cfg = load_config(config)
    runs_dir.mkdir(parents=True, exist_ok=True)
    handle = Store(store or cfg.store_url(runs_dir))
    return cfg, handle, Registry(handle, default_export_path(runs_dir, cfg.name))


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: serve.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: serve.port)")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    store: StoreOption = None,
    runs_dir: RunsOption = Path("runs"),
    default_model: Annotated[
        Path | None,
        typer.Option(help="candidate folder used until one is promoted (default: serve.default_model)"),
    ] = None,
) -> None:
    """Serve the promoted router as an OpenAI-compatible endpoint (/v1/chat/completions, /v1/models,
    /v1/feedback); every interaction is logged to the store."""
    # imported here, not at the top: the web framework, the PII masker and the routers would slow every
    # `flywheel` command's start-up
    import uvicorn

    from flywheel.serve.app import UnsafeBind, check_exposure, create_app
    from flywheel.serve.records import warm_up
    from flywheel.serve.routing import NoRouterAvailable, provider_for

    cfg, handle, registry = _registry(config, store, runs_dir)
    provider = provider_for(cfg, registry, default_model)
    host, port = host or cfg.serve.host, cfg.serve.port if port is None else port
    api_key = os.environ.get(cfg.serve.api_key_env) or None
    try:
        check_exposure(host, api_key, cfg.serve.api_key_env)
    except UnsafeBind as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    app = create_app(
        handle,
        provider,
        max_request_bytes=cfg.serve.max_request_bytes,
        pii=cfg.collect.pii,
        api_key=api_key,
        production_shadow_share=cfg.serve.production_shadow_share,
    )
    typer.echo("loading the router and the PII masker ...", err=True)
    try:
        cascade = provider.get().cascade
    except NoRouterAvailable as err:  # the service still starts; requests get 503 until one is promoted
        typer.echo(f"warning: {err}", err=True)
    else:
        if cascade is not None:
            typer.echo(
                f"cascade: {cascade.student.name} answers at probability >= {cascade.threshold:g}, else "
                f"{cascade.production.name} (serve.production_endpoint) decides",
                err=True,
            )
    _echo_shadows(provider, cfg.serve.production_shadow_share)
    warm_up(cfg.collect.pii)
    key_note = f"API key from {cfg.serve.api_key_env}" if api_key else "no API key (loopback only)"
    typer.echo(f"flywheel router on http://{host}:{port}/v1 · {key_note} · store {handle}", err=True)
    # no access log: every request is in the store already, and a log line each costs ~5% of the CPU
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


def _echo_shadows(provider, share: float) -> None:
    """Say what the service decides in shadow: the production model's share, the registry's candidate."""
    from flywheel.serve.routing import NoRouterAvailable  # see serve(): start-up stays light

    if share > 0:
        if provider.production_model is None:
            typer.echo(
                "warning: serve.production_shadow_share is set but serve.production_endpoint is not: "
                "nothing is asked in shadow",
                err=True,
            )
        else:
            typer.echo(
                f"production in shadow: {provider.production_model} also decides {share:.0%} of the queries "
                "a small router answers (logged, never answered)",
                err=True,
            )
    try:
        candidate = provider.shadow_candidate()
    except NoRouterAvailable as err:
        typer.echo(f"warning: {err}", err=True)
        return
    if candidate is not None:
        cascade = candidate.threshold is not None
        kind = f"a cascade at threshold {candidate.threshold:g}" if cascade else "a single router"
        typer.echo(
            f"in shadow: {candidate.name} ({kind}) decides every query beside the router in service "
            "(logged, never answered)",
            err=True,
        )


def promote(
    artifact: Annotated[Path | None, typer.Argument(help="trained candidate folder to promote")] = None,
    reason: Annotated[str | None, typer.Option(help="why (required to promote)")] = None,
    metrics: Annotated[str | None, typer.Option(help="metrics as a JSON object")] = None,
    cycle_id: Annotated[str | None, typer.Option(help="the cycle that produced the artifact")] = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="restore the previous promotion, or the production model")
    ] = False,
    to_production: Annotated[
        bool, typer.Option("--to-production", help="with --rollback: undo every promotion at once")
    ] = False,
    show: Annotated[bool, typer.Option("--show", help="print who serves and the history")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    store: StoreOption = None,
    runs_dir: RunsOption = Path("runs"),
) -> None:
    """Promote a trained candidate, roll back to the previous one (from the first promotion: to the
    production model), or show the registry (JSON on stdout; who is serving also on stderr)."""
    chosen = sum([artifact is not None, rollback, show])
    if chosen != 1:
        typer.echo("give exactly one of: ARTIFACT (to promote), --rollback, --show", err=True)
        raise typer.Exit(2)
    if to_production and not rollback:
        typer.echo("--to-production goes with --rollback", err=True)
        raise typer.Exit(2)
    _, _, registry = _registry(config, store, runs_dir)
    try:
        if show:
            snapshot = registry.snapshot()
            typer.echo(json.dumps(snapshot, indent=2))
            typer.echo(snapshot["serving"]["message"], err=True)
        elif rollback:
            event = registry.rollback(
                reason or "manual rollback (flywheel promote --rollback)", to_production=to_production
            )
            snapshot = registry.snapshot()
            undone = next(e for e in snapshot["history"] if e["seq"] == event.undoes_seq)
            summary = {
                "rolled_back": undone["model_name"],
                "event": event.as_dict(),
                "serving": snapshot["serving"],
                "current": snapshot["current"],
            }
            typer.echo(json.dumps(summary))
            typer.echo(snapshot["serving"]["message"], err=True)
        else:
            if not reason:
                typer.echo("promoting needs --reason", err=True)
                raise typer.Exit(2)
            parsed = json.loads(metrics) if metrics else {}
            if not isinstance(parsed, dict):
                raise ValueError("--metrics must be a JSON object")
            entry = registry.promote(artifact, reason=reason, metrics=parsed, cycle_id=cycle_id)
            typer.echo(json.dumps({"current": entry.as_dict()}))
    except (RegistryError, OSError, ValueError) as err:  # OSError: no candidate.json, export unwritable
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("promote")(promote)
