"""Which router answers: the registry's current promotion, else the configured default model."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from flywheel.config import REPO_ROOT, Config
from flywheel.models import Router, load_router
from flywheel.registry import Registry


class NoRouterAvailable(RuntimeError):
    """Nothing is promoted and no default model is configured (or it cannot be loaded)."""


@dataclass(frozen=True)
class ActiveRouter:
    name: str
    artifact_path: str
    origin: str  # "promoted" or "default"
    router: Router

    def route(self, text: str) -> str | None:
        return self.router.predict([text])[0]


def configured_default_model(config: Config) -> Path | None:
    """`serve.default_model` as a folder; a relative path is taken from the repository root, so the service
    (run from anywhere) and the feedback form (run in its notebook's folder) agree."""
    if not config.serve.default_model:
        return None
    path = Path(config.serve.default_model).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


class RouterProvider:
    """Resolve the router in force on every call, loading a model only when it changes.

    A promotion or rollback in the registry takes effect on the next request, without a restart.
    """

    def __init__(self, registry: Registry | None = None, default_model: str | Path | None = None):
        self.registry = registry
        self.default_model = Path(default_model).expanduser().resolve() if default_model else None
        self._lock = threading.Lock()
        self._loaded: ActiveRouter | None = None

    def resolve(self) -> tuple[str, Path, str | None]:
        """(origin, artifact folder, promoted name or None) of the router in force."""
        entry = self.registry.current() if self.registry is not None else None
        if entry is not None:
            return "promoted", Path(entry.artifact_path), entry.model_name
        if self.default_model is not None:
            return "default", self.default_model, None
        raise NoRouterAvailable(
            "no router model available: nothing is promoted in the registry and serve.default_model is "
            "not set; run a cycle (`flywheel cycle`) and promote a candidate (`flywheel promote PATH "
            "--reason ...`) or set serve.default_model to a trained candidate folder"
        )

    def get(self) -> ActiveRouter:
        origin, folder, name = self.resolve()
        loaded = self._loaded
        if loaded is not None and loaded.artifact_path == str(folder) and loaded.origin == origin:
            return loaded
        with self._lock:
            loaded = self._loaded
            if loaded is None or loaded.artifact_path != str(folder) or loaded.origin != origin:
                try:
                    router = load_router(folder)
                except (FileNotFoundError, OSError, ValueError, KeyError) as err:
                    raise NoRouterAvailable(
                        f"the {origin} router at {folder} cannot be loaded: {err}"
                    ) from err
                loaded = ActiveRouter(name or router.name, str(folder), origin, router)
                self._loaded = loaded
        return loaded
