"""Which router answers: the registry's current promotion; while the production model serves, the
configured default model (until a first promotion) or the production endpoint (`serve.production_endpoint`),
else none: the service answers 503 and the feedback form says why.

A promoted (or default) cascade defers its least confident queries to the production endpoint: it needs
`serve.production_endpoint`, and each decision names the model that made it (the student's or the production
model's).

The registry's candidate in shadow (`RouterProvider.shadow_candidate`) is loaded beside the router in force;
it decides without answering (`flywheel.serve.shadow` logs its decisions). A cascade in shadow never calls the
production endpoint: a query it would defer takes the production decision when the service has one for that
query (production answered it, or decided it in shadow); otherwise the student's own best guess is logged,
under the model name `student_guess_model(name)` ("<name>/student"), so it is never mistaken for the
cascade's decision."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flywheel.core.cascade import (
    CASCADE,
    STUDENT_FOLDER,
    CascadeRouter,
    NoProductionRouter,
    cascade_decisions,
)
from flywheel.core.config import REPO_ROOT, Config, EndpointConfig
from flywheel.core.registry import PRODUCTION, Registry
from flywheel.core.routers import EndpointRouter, Router, load_router, read_candidate_card


class NoRouterAvailable(RuntimeError):
    """Nothing is promoted and no default model is configured (or it cannot be loaded)."""


class ProductionServing(NoRouterAvailable):
    """A rollback put the production model back in service and no production endpoint is configured."""


class DeferralFailed(RuntimeError):
    """A cascade deferred a question to the production model and its endpoint failed: no answer (never the
    student's below the threshold). The endpoint's error is the cause."""

    def __init__(self, cascade: str, production: str):
        self.cascade, self.production = cascade, production
        super().__init__(
            f"the cascade {cascade} deferred this question to the production model {production} (below its "
            "confidence threshold) and the production endpoint failed"
        )


@dataclass(frozen=True)
class Decision:
    """One routed question: the expert (None: no single expert) and the model that decided it. With `error`
    the model that had to decide failed (a cascade's production endpoint): there is no answer."""

    expert: str | None
    model: str
    error: Exception | None = None


@dataclass(frozen=True)
class ActiveRouter:
    name: str
    artifact_path: str
    origin: str  # "promoted", "default" or "production"
    router: Router

    @property
    def cascade(self) -> CascadeRouter | None:
        return self.router if isinstance(self.router, CascadeRouter) else None

    def decide(self, texts: list[str]) -> list[Decision]:
        """Route a batch. A cascade's queries are decided by its student or the production model (named per
        query); when the production model fails, its queries carry the error and the others are answered."""
        cascade = self.cascade
        if cascade is None:
            return [Decision(expert, self.name) for expert in self.router.predict(texts)]
        outcome = cascade.decide(texts)

        def failed(deferred: bool) -> DeferralFailed | None:  # one per question: each request raises its own
            if not deferred or outcome.error is None:
                return None
            error = DeferralFailed(self.name, cascade.production.name)
            error.__cause__ = outcome.error
            return error

        return [
            Decision(expert, model, failed(deferred))
            for expert, model, deferred in zip(
                outcome.decisions, outcome.models, outcome.deferred, strict=True
            )
        ]

    def route(self, text: str) -> Decision:
        """One question's decision; raises the error of a model that failed to decide."""
        decision = self.decide([text])[0]
        if decision.error is not None:
            raise decision.error
        return decision


def student_guess_model(name: str) -> str:
    """The model name under which a cascade in shadow logs its student's guess for a query it would defer
    and whose production decision the service does not have."""
    return f"{name}/student"


@dataclass(frozen=True)
class ShadowCandidate:
    """The registry's candidate in shadow, loaded: a single router, or a cascade's student and threshold
    (`threshold` set). It decides, it never answers."""

    name: str
    artifact_path: str
    router: Router
    threshold: float | None = None

    def decide(self, texts: list[str], production: Mapping[int, str | None]) -> list[Decision]:
        """Its decisions on a batch. `production` holds the production model's decision for the queries
        (by position) that have one; a cascade takes those for the queries it defers."""
        if self.threshold is None:
            return [Decision(expert, self.name) for expert in self.router.predict(texts)]
        proba = np.asarray(self.router.predict_proba(texts), dtype=float)
        labels = list(self.router.labels)
        fallback = [production.get(i) for i in range(len(texts))]
        decisions, deferred = cascade_decisions(proba, labels, self.threshold, fallback)
        best = proba.argmax(axis=1)
        return [
            Decision(labels[best[i]], student_guess_model(self.name))
            if deferred[i] and i not in production
            else Decision(decisions[i], self.name)
            for i in range(len(texts))
        ]


def configured_default_model(config: Config) -> Path | None:
    """`serve.default_model` as a folder; a relative path is taken from the repository root, so the service
    (run from anywhere) and the feedback form (run in its notebook's folder) agree."""
    if not config.serve.default_model:
        return None
    path = Path(config.serve.default_model).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def provider_for(
    config: Config, registry: Registry | None, default_model: str | Path | None = None
) -> RouterProvider:
    """The provider the service and the feedback form use, from a config's `serve:` and expert catalog."""
    return RouterProvider(
        registry,
        default_model or configured_default_model(config),
        production_endpoint=config.serve.production_endpoint,
        experts=config.experts,
    )


class RouterProvider:
    """Resolve the router in force on every call, loading a model only when it changes.

    A promotion or rollback in the registry takes effect on the next request, without a restart. After a
    rollback to the production model the default model is not used (it was never promoted): the production
    endpoint routes when one is configured, else requests get ProductionServing (503).
    """

    def __init__(
        self,
        registry: Registry | None = None,
        default_model: str | Path | None = None,
        production_endpoint: EndpointConfig | None = None,
        experts: dict[str, str] | None = None,
    ):
        if production_endpoint is not None and not experts:
            raise ValueError("routing through the production endpoint needs the expert catalog")
        self.registry = registry
        self.default_model = Path(default_model).expanduser().resolve() if default_model else None
        self.production_endpoint = production_endpoint
        self.experts = experts or {}
        self._lock = threading.Lock()
        self._loaded: ActiveRouter | None = None
        self._shadow: ShadowCandidate | None = None

    @property
    def production_model(self) -> str | None:
        """The production endpoint's model name (what its decisions are logged as), None without one."""
        return self.production_endpoint.model if self.production_endpoint is not None else None

    def resolve(self) -> tuple[str, str, str | None]:
        """(origin, artifact folder or production endpoint URL, name or None) of the router in force."""
        state = self.registry.state() if self.registry is not None else None
        if state is not None and state.current is not None:
            return "promoted", state.current.artifact_path, state.current.model_name
        rolled_back = state is not None and state.rolled_back_to_production
        if self.default_model is not None and not rolled_back:
            return "default", str(self.default_model), None
        if self.production_endpoint is not None:
            return PRODUCTION, self.production_endpoint.base_url, self.production_endpoint.model
        if rolled_back:
            raise ProductionServing(
                "the production model is serving (promotions were rolled back); this service has no small "
                "router: send requests to the production model, set serve.production_endpoint to route "
                "through it here, or promote a candidate (`flywheel promote PATH --reason ...`)"
            )
        raise NoRouterAvailable(
            "no router model available: nothing is promoted in the registry and serve.default_model is "
            "not set; run a cycle (`flywheel cycle`) and promote a candidate (`flywheel promote PATH "
            "--reason ...`) or set serve.default_model to a trained candidate folder"
        )

    def get(self) -> ActiveRouter:
        origin, folder, name = self.resolve()
        loaded = self._loaded
        if loaded is not None and loaded.artifact_path == folder and loaded.origin == origin:
            return loaded
        with self._lock:
            loaded = self._loaded
            if loaded is None or loaded.artifact_path != folder or loaded.origin != origin:
                try:
                    router = self._load(origin, folder)
                except (FileNotFoundError, OSError, ValueError, KeyError) as err:
                    raise NoRouterAvailable(
                        f"the {origin} router at {folder} cannot be loaded: {err}"
                    ) from err
                loaded = ActiveRouter(name or router.name, folder, origin, router)
                self._loaded = loaded
        return loaded

    def shadow_candidate(self) -> ShadowCandidate | None:
        """The registry's candidate in shadow, loaded once per artifact; None when there is none. Raises
        NoRouterAvailable when it cannot be loaded."""
        entry = self.registry.state().shadow if self.registry is not None else None
        if entry is None:
            return None
        loaded = self._shadow
        name, where = entry.model_name, entry.artifact_path
        if loaded is not None and (loaded.name, loaded.artifact_path) == (name, where):
            return loaded
        folder = Path(where)
        try:
            card = read_candidate_card(folder)
            if card["kind"] == CASCADE:  # its student only: its deferrals are never sent to production
                student = load_router(folder / card.get("student", STUDENT_FOLDER))
                loaded = ShadowCandidate(name, where, student, float(card["threshold"]))
            else:
                loaded = ShadowCandidate(name, where, load_router(folder))
        except (FileNotFoundError, OSError, ValueError, KeyError) as err:
            raise NoRouterAvailable(f"the candidate in shadow at {folder} cannot be loaded: {err}") from err
        self._shadow = loaded
        return loaded

    def production_router(self) -> EndpointRouter | None:
        """A client of the production endpoint (None without one): the production model asked in shadow."""
        return self._production_router() if self.production_endpoint is not None else None

    def _load(self, origin: str, where: str) -> Router:
        if origin == PRODUCTION:
            return self._production_router()
        if read_candidate_card(Path(where))["kind"] != CASCADE:
            return load_router(where)
        production = self._production_router() if self.production_endpoint is not None else None
        try:
            return load_router(where, production=production)
        except NoProductionRouter as err:  # a configuration problem: say it (503), not "cannot be loaded"
            raise NoRouterAvailable(f"the {origin} router cannot serve: {err}") from None

    def _production_router(self) -> EndpointRouter:
        endpoint = self.production_endpoint
        try:
            return EndpointRouter(endpoint.model, endpoint.model_dump(), self.experts)
        except RuntimeError as err:  # its API key variable is unset
            raise ValueError(str(err)) from None
