"""`flywheel run`: N weeks of the demo world's traffic through the real parts.

Each week the router in service answers the week's questions: the production LLM's own logs until a
candidate enters its shadow week; from then on the router service over HTTP (through a simulated production
LLM service while nothing is promoted, and for a cascade's deferrals). `flywheel status` decides whether a
cycle runs; a cycle is the four notebooks over the store, like `flywheel cycle`. After a cycle, that week's
audited items (blind expert labels) judge the router in service (rolled back when it falls below the gate)
and a candidate in its shadow week (promoted when it holds the gate and agrees with the router in service,
rejected otherwise); a candidate the cycle's evaluation passes goes into its shadow week. Everything lands in
`runs/flywheel-<id>/`: the store and registry, the replay folder the cycles read, every cycle's run
directory, `trajectory.json`, `trajectory.png` and `flywheel.html`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from flywheel.argilla import server as argilla_server
from flywheel.collect.drift import cycle_status
from flywheel.core.config import REPO_ROOT, Config, load_config
from flywheel.core.cost import cost_per_1k_from_tokens
from flywheel.core.files import atomic_write_json
from flywheel.core.labels import AMBIGUOUS, majority_labels
from flywheel.core.registry import Entry, Registry, State
from flywheel.core.routers import EndpointRouter
from flywheel.core.store import Store
from flywheel.core.tracking import track_week
from flywheel.cycle import StageFailed, run_cycle
from flywheel.demo.generator import PRODUCTION_MODEL
from flywheel.demo.production_llm import production_app
from flywheel.demo.weekly import WeeklyWorld
from flywheel.serve.app import create_app
from flywheel.serve.routing import provider_for
from flywheel.serve.runner import serve_in_thread
from flywheel.weeks.gate import Verdict, agreement_between, costs_more, judge
from flywheel.weeks.traffic import (
    SimulatedNow,
    deliver_from_production,
    deliver_through_service,
)

PREFIX = "flywheel-"
TRAJECTORY = "trajectory.json"
STATE = "state.json"  # the week loop's own state, for --resume
FROZEN_CONFIG = "flywheel.yaml"  # the config the flywheel started with, resolved


class GateWrites:
    """The registry writes of one week's gate (rollback, promotion, rejections), made once even when the
    week is replayed after a kill: the registry holds `start` events when the gate begins (recorded in the
    week's state before its first write), so on a replay the writes made before the kill are matched in
    order and returned instead of being made again. `state()` is the registry as the gate has left it so
    far, never with writes it has not reached yet on this replay."""

    def __init__(self, registry: Registry, start: int):
        self.registry, self.start, self.done = registry, start, 0

    def write(self, events: tuple[str, ...], make: Callable[[], Entry]) -> Entry:
        made = self.registry.history()[self.start + self.done :]
        if made:
            entry = made[0]
            if entry.event not in events:
                raise FlywheelError(
                    f"the registry changed during this week's gate: expected {'/'.join(events)}, found "
                    f"{entry.event} of {entry.model_name} (seq {entry.seq})"
                )
        else:
            entry = make()
        self.done += 1
        return entry

    def state(self) -> State:
        return self.registry.state_as_of(self.start + self.done)


class FlywheelError(RuntimeError):
    """A week could not be completed (a cycle failed or paused)."""


def _kind(row: dict) -> str:
    return {"production": "production", "cascade": "cascade"}.get(row.get("kind", ""), "single")


def models_from_summary(summary: dict) -> dict[str, dict]:
    """Each model's accuracy with its CI on the unbiased test, cost and deferral share, by name (the
    baseline under the name `production`)."""
    rows = [summary["baseline"], *summary.get("candidates", []), *summary.get("cascades", [])]
    models = {}
    for row in rows:
        name = "production" if row.get("is_baseline") else row["name"]
        models[name] = {
            "kind": "production" if row.get("is_baseline") else _kind(row),
            "accuracy": row.get("accuracy"),
            "ci_low": row.get("ci_low"),
            "ci_high": row.get("ci_high"),
            "n": row.get("n"),
            "cost_per_1k": row.get("cost_per_1k"),
            "deferral_share": row.get("deferral_share"),
            "student": row.get("student"),
        }
    return models


class Flywheel:
    """The state of one `flywheel run` and its week loop."""

    def __init__(
        self,
        config_path: Path | None,
        runs_root: Path,
        log: Callable[[str], None],
        resume: Path | None = None,
    ):
        """A new flywheel from `config_path` under `runs_root`, or (`resume`) the one in that folder, taken up
        after its last complete week with the config it started with."""
        self.log = log
        if resume is None:
            self.config_path = Path(config_path).resolve()
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            self.config = load_config(self.config_path)
            if self.config.flywheel is None:
                raise ValueError(f"{config_path}: no `flywheel:` section (see configs/flywheel.yaml)")
            self.folder = (Path(runs_root) / f"{PREFIX}{stamp}-{self.config.name}").resolve()
            self.folder.mkdir(parents=True)
            frozen = self.folder / FROZEN_CONFIG
            frozen.write_text(
                f"# {self.config_path.name} as this flywheel started with it (what --resume reads)\n"
                + yaml.safe_dump(self.config.model_dump(mode="json"))
            )
            self.config_path = frozen
        else:
            self.folder = Path(resume).resolve()
            self.config_path = self.folder / FROZEN_CONFIG
            if not (self.folder / STATE).is_file() or not self.config_path.is_file():
                raise FlywheelError(f"cannot resume {self.folder}: no {STATE} or {FROZEN_CONFIG} in it")
            self.config = load_config(self.config_path)
        self.settings = self.config.flywheel
        self.replay = self.folder / "world"
        self.replay.mkdir(exist_ok=True)
        for name in ("logs.jsonl", "hidden_truth.jsonl"):
            (self.replay / name).touch()
        self.world = WeeklyWorld.create(
            self.folder.parent / "demo-worlds" / f"{PREFIX}{self.config.name}",
            experts=self.config.experts,
            n_interactions=self.settings.n_interactions,
            weeks=self.settings.weeks,
            start=self.config.source.start,
            seed=self.config.seed,
        )
        self.store_url = f"sqlite:///{self.folder / 'store.db'}"
        self.store = Store(self.store_url)
        self.registry = Registry(self.store, self.folder / "registry.json")
        self.now = SimulatedNow()
        self.weeks: list[dict] = []
        self.latest_models: dict[str, dict] = {}
        self.production_floor: float | None = None
        self.last_cycle_week = 0
        self.serving_since: dict[int, int] = {}  # registry seq of a promotion -> the week it was made
        self.shadow_since: dict[int, int] = {}  # registry seq of a shadow -> its first shadow week
        self.in_progress: dict[str, Any] | None = None  # the week under way (what a resume takes up)
        self.seconds_before = 0.0  # spent by earlier invocations of a resumed run
        self.started_argilla = (
            False  # this flywheel started the embedded Argilla server (stops it at the end)
        )
        self.started = time.perf_counter()
        if resume is not None:
            self._load_state()

    # --- resuming ----------------------------------------------------------------------------------------
    def _save_state(self) -> None:
        """The week loop's memory, written when a week begins, before its cycle and when it ends."""
        atomic_write_json(
            self.folder / STATE,
            {
                "weeks_done": len(self.weeks),
                "in_progress": self.in_progress,
                "latest_models": self.latest_models,
                "production_floor": self.production_floor,
                "last_cycle_week": self.last_cycle_week,
                "serving_since": {str(k): v for k, v in self.serving_since.items()},
                "shadow_since": {str(k): v for k, v in self.shadow_since.items()},
                "seconds": self.seconds_before + time.perf_counter() - self.started,
                "started_argilla": self.started_argilla,
            },
        )

    def _load_state(self) -> None:
        state = json.loads((self.folder / STATE).read_text())
        trajectory = json.loads((self.folder / TRAJECTORY).read_text()) if state["weeks_done"] else {}
        self.weeks = trajectory.get("weeks", [])[: state["weeks_done"]]
        self.in_progress = state["in_progress"]
        self.latest_models = state["latest_models"]
        self.production_floor = state["production_floor"]
        self.last_cycle_week = state["last_cycle_week"]
        self.serving_since = {int(k): v for k, v in state["serving_since"].items()}
        self.shadow_since = {int(k): v for k, v in state["shadow_since"].items()}
        self.seconds_before = state["seconds"]
        self.started_argilla = state["started_argilla"]

    def _entry(self, seq: int | None) -> Entry | None:
        return None if seq is None else next(e for e in self.registry.history() if e.seq == seq)

    def _cycle_dirs(self) -> list[str]:
        cycles = self.folder / "cycles"
        return (
            sorted(p.name for p in cycles.iterdir() if (p / "manifest.json").is_file())
            if cycles.is_dir()
            else []
        )

    # --- set-up ------------------------------------------------------------------------------------------
    def write_cycle_config(self, production_url: str) -> Path:
        """The cycles' config, frozen when the flywheel starts (editing the YAML mid-run changes nothing): the
        flywheel config with the replay folder as the source, the flywheel's store, the simulated production
        LLM as the production endpoint and promotions via a shadow week."""
        overlay: dict[str, Any] = {
            "source": {"kind": "replay", "paths": [str(self.replay)]},
            "store": {"url": self.store_url},
            "serve": {"production_endpoint": {"base_url": production_url, "model": PRODUCTION_MODEL}},
        }
        if self.settings.shadow_week:
            overlay["eval"] = {"promote_via": "shadow"}
        resolved = load_config(self.config_path, overrides=overlay).model_dump(mode="json")
        path = self.folder / "cycle.yaml"
        path.write_text(
            f"# {self.config_path.name} as the flywheel's cycles run it\n" + yaml.safe_dump(resolved)
        )
        self.cycle_config_path = path
        self.cycle_config: Config = load_config(path)
        return path

    # --- the week loop -----------------------------------------------------------------------------------
    def run(self) -> Path:
        with ExitStack() as stack:
            stack.enter_context(self._embedded_argilla())
            production_url = stack.enter_context(serve_in_thread(production_app(self.world)))
            self.write_cycle_config(production_url)
            provider = provider_for(self.cycle_config, self.registry)
            app = create_app(
                self.store,
                provider,
                pii=self.cycle_config.collect.pii,
                production_shadow_share=self.cycle_config.serve.production_shadow_share,
                clock=self.now.clock,
                new_interaction_id=self.now.interaction_id,
            )
            self.shadows = app.state.shadow
            self.router_url = stack.enter_context(serve_in_thread(app))
            self.log(
                f"flywheel {self.folder.name}: {self.settings.weeks} weeks, router service {self.router_url}"
            )
            if self.weeks:
                self.log(f"resuming after week {len(self.weeks)}")
            for week in range(len(self.weeks) + 1, self.settings.weeks + 1):
                self.weeks.append(self.run_week(week))
                self.in_progress = None
                self.write_trajectory()
                self._save_state()
                track_week(self.folder, self.config, self.weeks[-1], self.log)  # MLflow: step = week
        self.write_trajectory(final=True)
        return self.folder

    @contextmanager
    def _embedded_argilla(self) -> Iterator[None]:
        """One embedded Argilla server for all the cycles (each cycle would start and stop its own), unless
        the config points at a team's server. A resumed run takes over the server its stopped run started."""
        if os.environ.get(self.config.review.argilla_url_env):
            yield
            return
        if argilla_server.is_running() and not self.started_argilla:
            yield  # someone else's: left running
            return
        self.log(f"the embedded Argilla server: {argilla_server.up(log=self.log).url}")
        self.started_argilla = True
        self._save_state()
        try:
            yield
        finally:
            argilla_server.down()

    def run_week(self, week: int) -> dict:
        resumed = self.in_progress if self.in_progress and self.in_progress["week"] == week else None
        if resumed:  # the routers as they were when the week began (its gate may have changed them since)
            in_service, shadowed = self._entry(resumed["in_service"]), self._entry(resumed["shadowed"])
        else:
            state = self.registry.state()
            in_service, shadowed = state.current, getattr(state, "shadow", None)
            self.in_progress = {
                "week": week,
                "in_service": in_service.seq if in_service else None,
                "shadowed": shadowed.seq if shadowed else None,
                "cycle": None,
            }
            self._save_state()
        if in_service is None and shadowed is None:  # the production LLM's own logs
            delivery = deliver_from_production(self.world, week, self.replay, self.store, self.cycle_config)
        else:  # the router service answers (through the production endpoint while nothing is promoted)
            delivery = deliver_through_service(
                self.world, week, self.replay, self.router_url, self.now, self.store
            )
            if not self.shadows.flush(timeout=600):
                raise FlywheelError(f"week {week}: the service's shadow decisions were not all written")
        router = in_service.model_name if in_service else "production"
        self.log(
            f"week {week:>2}: {delivery.traffic} questions answered by {router}"
            + (f", {shadowed.model_name} in shadow" if shadowed else "")
        )
        cycle = self.in_progress.get("cycle")
        status = (
            {"should_run": True, "reasons": cycle["reasons"]}  # decided before the run was stopped
            if cycle
            else self.trigger(in_service, shadowed)
        )
        entry: dict[str, Any] = {
            "week": week,
            "start": self.world.week_start(week).isoformat(),
            "router": router,
            "router_kind": self._router_kind(in_service),
            "traffic": delivery.traffic,
            "feedback": delivery.rated,
            "satisfied_share": delivery.satisfied_share,
            "trigger": {"should_run": status["should_run"], "reasons": status["reasons"]},
            "cycle_id": None,
            "models": {},
            "reviews": {"total": 0, "budget": self.cycle_config.review.budget, "by_policy": {}},
            "in_service": {"name": router, "reviewed": 0, "accuracy": None, "ci_low": None, "ci_high": None},
            "events": [],
        }
        if status["should_run"]:
            if not cycle:
                self.in_progress["cycle"] = {
                    "reasons": status["reasons"],
                    "before": self._cycle_dirs(),
                    "reviewed_before": sorted(self._reviewed_keys()),
                }
                self._save_state()
            self.run_cycle_of_week(week, entry, in_service, shadowed)
        entry.update(self.week_counts(week, entry["router"], in_service))
        return entry

    def trigger(self, in_service: Entry | None, shadowed: Entry | None) -> dict[str, Any]:
        """`flywheel status` (new feedback, drift), and the gate's own needs: a candidate at the end of its
        shadow week, and a router promoted since the last cycle, are judged on an audit of their traffic."""
        status = cycle_status(self.store, self.cycle_config.collect)
        reasons = list(status["reasons"])
        if shadowed is not None:
            reasons.append(f"{shadowed.model_name} ends a shadow week: the gate judges it")
        if in_service is not None and self.serving_since.get(in_service.seq, 0) >= self.last_cycle_week:
            reasons.append(f"{in_service.model_name} served its first week: the gate judges it")
        return {**status, "should_run": bool(reasons), "reasons": reasons}

    def _router_kind(self, entry: Entry | None) -> str:
        if entry is None:
            return "production"
        return "cascade" if "+defer" in entry.model_name else "single"

    def run_cycle_of_week(
        self, week: int, entry: dict, in_service: Entry | None, shadowed: Entry | None
    ) -> None:
        cycle = self.in_progress["cycle"]
        reviewed_before = {tuple(key) for key in cycle["reviewed_before"]}
        started = [d for d in self._cycle_dirs() if d not in cycle["before"]]
        try:
            run = run_cycle(
                self.cycle_config_path,
                resume=self.folder / "cycles" / started[-1] if started else None,
                runs_root=self.folder / "cycles",
                kernel_name=self.settings.kernel,
                log=lambda line: self.log(f"          {line}"),
            )
        except StageFailed as err:
            raise FlywheelError(f"week {week}: {err}") from None
        if run.manifest().get("status") != "complete":
            raise FlywheelError(f"week {week}: cycle {run.cycle_id} did not complete ({run.path})")
        summary = json.loads((run.path / "summary.json").read_text())
        if "registry_events" not in cycle:  # the gate's writes start here (a replay matches them)
            cycle["registry_events"] = len(self.registry.history())
            self._save_state()
        self.gate = GateWrites(self.registry, cycle["registry_events"])
        entry["cycle_id"] = run.cycle_id
        entry["models"] = models_from_summary(summary)
        self.latest_models.update(entry["models"])
        production = entry["models"]["production"]["accuracy"]
        points = self.settings.gate.max_drop_points
        points = self.cycle_config.eval.max_drop_points if points is None else points
        self.production_floor = production - points / 100
        entry["reviews"].update(self._reviews_of(run.cycle_id, reviewed_before))

        # Each router is judged on the audited items it decided since it was last judged (cycles need not run
        # every week): the router in service since the previous cycle, a shadow since its shadow began.
        since = max(self.last_cycle_week, self.serving_since.get(in_service.seq, 0) if in_service else 0) + 1
        self.last_cycle_week = week
        labels, routed = self.week_labels(since, week), self.week_decisions(since, week)
        if in_service is not None:
            verdict = judge(
                in_service.model_name, routed, labels, self.production_floor, self.settings.gate.min_reviewed
            )
            entry["in_service"].update(
                reviewed=verdict.reviewed,
                accuracy=verdict.accuracy,
                ci_low=verdict.ci_low,
                ci_high=verdict.ci_high,
            )
            if verdict.passed is False:
                reason = f"gate, week {week}: {verdict.reason}"
                rolled = self.gate.write(("rollback", "production"), lambda: self.registry.rollback(reason))
                entry["events"].append(self._event("rollback", in_service.model_name, rolled.reason, verdict))
                self.log(f"          rolled back {in_service.model_name}: {verdict.reason}")
        if shadowed is not None:
            first = self.shadow_since.get(shadowed.seq, 1)
            self.judge_shadow(
                week, entry, shadowed, self.week_labels(first, week), self.week_decisions(first, week)
            )
        now = self.gate.state()
        new_shadow = getattr(now, "shadow", None)
        if now.current is not None and (in_service is None or now.current.seq != in_service.seq):
            self.serving_since.setdefault(now.current.seq, week)
        if new_shadow is not None and (shadowed is None or new_shadow.seq != shadowed.seq):
            self.shadow_since[new_shadow.seq] = week + 1
            entry["events"].append(self._event("shadow", new_shadow.model_name, new_shadow.reason))
            dearer = self.dearer_than_in_service(new_shadow, now.current)
            if dearer:  # it could not replace the router in service: no shadow week for it
                reason = f"week {week}: {dearer}"
                self.gate.write(("reject",), lambda: self.registry.reject(reason))
                entry["events"].append(self._event("reject", new_shadow.model_name, reason))
                self.log(f"          rejected {new_shadow.model_name}: {dearer}")
            else:
                self.log(f"          {new_shadow.model_name} goes into its shadow week")
        if not self.settings.shadow_week and now.current is not None and now.current != in_service:
            entry["events"].append(self._event("promote", now.current.model_name, now.current.reason))

    def judge_shadow(
        self, week: int, entry: dict, shadowed: Entry, labels: pd.Series, routed: pd.Series
    ) -> None:
        shadow = self.store.shadow_frame(role="candidate")
        shadow = shadow[shadow["interaction_id"].isin(routed.index)].set_index("interaction_id")
        decided = shadow[shadow["model"].eq(shadowed.model_name)]["decision"]
        # A cascade in shadow logs its student's guess where it would defer and production's decision is not
        # known; on the audited items, production is asked now: that is what the cascade would have answered.
        guessed = shadow[shadow["model"].eq(f"{shadowed.model_name}/student")].index.intersection(
            labels.index
        )
        deferred = pd.Series(self.production_decisions(list(guessed)), index=guessed, dtype=object)
        verdict = judge(
            shadowed.model_name,
            pd.concat([decided, deferred]),
            labels,
            self.production_floor,
            self.settings.gate.min_reviewed,
            agreement=agreement_between(decided, routed),
            min_agreement=self.settings.gate.min_agreement,
            to_promote=True,
        )
        state = self.gate.state()
        current_shadow = getattr(state, "shadow", None)
        dearer = self.dearer_than_in_service(shadowed, state.current)
        if verdict.passed and dearer:
            verdict = replace(verdict, passed=False, reason=f"{verdict.reason}, but {dearer}")
        if verdict.passed:
            promoted = self.gate.write(
                ("promote",),
                lambda: self.registry.promote(
                    shadowed.artifact_path,
                    reason=f"shadow week {week}: {verdict.reason}",
                    metrics={**shadowed.metrics, "shadow_week": verdict.as_dict()},
                    cycle_id=entry["cycle_id"],
                    model_name=shadowed.model_name,
                ),
            )
            entry["events"].append(self._event("promote", shadowed.model_name, promoted.reason, verdict))
            self.log(f"          promoted {shadowed.model_name}: {verdict.reason}")
        elif verdict.passed is False:
            reason = f"shadow week {week}: {verdict.reason}"
            if current_shadow is not None and current_shadow.seq == shadowed.seq:
                self.gate.write(("reject",), lambda: self.registry.reject(reason))
            entry["events"].append(self._event("reject", shadowed.model_name, reason, verdict))
            self.log(f"          rejected {shadowed.model_name}: {verdict.reason}")
        else:
            self.log(f"          {shadowed.model_name} stays in shadow: {verdict.reason}")

    def dearer_than_in_service(self, candidate: Entry, in_service: Entry | None) -> str | None:
        """Why `candidate` should not replace a router in service that holds the gate: it costs more per 1k
        queries (by each one's own cycle; within `eval.cost_tie_share` of production's cost is a tie)."""
        if in_service is None:
            return None
        ours, theirs = candidate.metrics.get("cost_per_1k"), in_service.metrics.get("cost_per_1k")
        production = self.latest_models.get("production", {}).get("cost_per_1k")
        if not costs_more(ours, theirs, production, self.cycle_config.eval.cost_tie_share):
            return None
        return (
            f"it costs ${ours:.4f} per 1k queries, more than the router in service "
            f"({in_service.model_name}, ${theirs:.4f})"
        )

    def production_decisions(self, interaction_ids: list[str]) -> list[str | None]:
        if not interaction_ids:
            return []
        endpoint = self.cycle_config.serve.production_endpoint
        router = EndpointRouter(PRODUCTION_MODEL, endpoint.model_dump(), dict(self.config.experts))
        return router.predict([self.world.question(i).text for i in interaction_ids])  # as the user asked

    @staticmethod
    def _event(kind: str, model: str, reason: str, verdict: Verdict | None = None) -> dict:
        event = {"kind": kind, "model": model, "reason": reason}
        if verdict is not None:
            event["verdict"] = verdict.as_dict()
        return event

    # --- what the store says about a week ----------------------------------------------------------------
    def _week_ids(self, first: int, last: int | None = None) -> pd.Index:
        """The interactions of weeks first..last (one week when last is None)."""
        last = first if last is None else last
        start = datetime.combine(self.world.week_start(first), datetime.min.time(), tzinfo=UTC)
        end = datetime.combine(self.world.week_start(last), datetime.min.time(), tzinfo=UTC) + timedelta(
            days=7
        )
        frame = self.store.interactions_frame(["id", "timestamp"])
        stamps = pd.to_datetime(frame["timestamp"], utc=True)
        return pd.Index(frame.loc[(stamps >= start) & (stamps < end), "id"])

    def week_labels(self, first: int, last: int) -> pd.Series:
        """The audit experts' majority labels of the audited interactions of weeks first..last (ties and
        out-of-scope answers left out), by interaction id."""
        votes = majority_labels(self.store.reviews_frame(task="audit"))
        if votes.empty:
            return pd.Series(dtype=object)
        votes = votes[votes["label"].isin(list(self.config.experts)) & votes["label"].ne(AMBIGUOUS)]
        labels = votes.set_index("interaction_id")["label"]
        return labels[labels.index.isin(self._week_ids(first, last))]

    def week_decisions(self, first: int, last: int) -> pd.Series:
        frame = self.store.interactions_frame(["id", "routed_expert"]).set_index("id")["routed_expert"]
        return frame[frame.index.isin(self._week_ids(first, last))]

    def _reviewed_keys(self) -> set[tuple[str, str]]:
        reviews = self.store.reviews_frame()
        return set(zip(reviews["interaction_id"], reviews["task"], strict=True))

    def _reviews_of(self, cycle_id: str, before: set[tuple[str, str]]) -> dict:
        """Records the experts answered in this cycle, by the policy that chose them (by task when the
        cycle recorded no selection: no review budget)."""
        new = self._reviewed_keys() - before
        selections = self.store.review_selections_frame()
        chosen = selections[selections["cycle_id"].eq(cycle_id)].set_index("interaction_id")["policy"]
        by_policy: dict[str, int] = {}
        for interaction_id, task in sorted(new):
            policy = chosen.get(interaction_id, task)
            by_policy[policy] = by_policy.get(policy, 0) + 1
        return {"total": len(new), "by_policy": by_policy}

    def week_counts(self, week: int, router: str, in_service: Entry | None) -> dict:
        """Who answered the week's queries, production calls (answers, deferrals and shadow calls) and the
        week's cost against the production LLM answering everything."""
        ids = self._week_ids(week)
        frame = self.store.interactions_frame(["id", "model", "tokens_in", "tokens_out"]).set_index("id")
        week_frame = frame[frame.index.isin(ids)]
        answered_by = {str(k): int(v) for k, v in week_frame["model"].value_counts().sort_index().items()}
        shadow = self.store.shadow_frame(role="production")
        shadow_calls = int(shadow["interaction_id"].isin(ids).sum())
        production_answers = int((week_frame["model"] == PRODUCTION_MODEL).sum())
        production_calls = production_answers + shadow_calls
        per_query = self.production_cost_per_query(frame[frame["model"] == PRODUCTION_MODEL])
        student_answers = len(week_frame) - production_answers
        student_cost = self.student_cost_per_query(in_service)
        usd = production_calls * per_query + student_answers * student_cost
        only = len(week_frame) * per_query
        before = (
            self.weeks[-1]["cost"]
            if self.weeks
            else {"cumulative_usd": 0.0, "cumulative_production_only_usd": 0.0}
        )
        cumulative, cumulative_only = (
            before["cumulative_usd"] + usd,
            before["cumulative_production_only_usd"] + only,
        )
        return {
            "answered_by": answered_by,
            "production_calls": production_calls,
            "cost": {
                "usd": usd,
                "production_only_usd": only,
                "cumulative_usd": cumulative,
                "cumulative_production_only_usd": cumulative_only,
                "saved_usd": cumulative_only - cumulative,
                "cost_per_1k": 1000 * usd / len(week_frame) if len(week_frame) else None,
            },
        }

    def production_cost_per_query(self, production_rows: pd.DataFrame) -> float:
        prices = self.cycle_config.eval.prices
        return (
            cost_per_1k_from_tokens(
                production_rows["tokens_in"].mean(),
                production_rows["tokens_out"].mean(),
                prices.baseline_usd_per_m_tokens_in,
                prices.baseline_usd_per_m_tokens_out,
            )
            / 1000
        )

    def student_cost_per_query(self, in_service: Entry | None) -> float:
        """The cost of a query the small router answers: its student's measured cost per 1k (for a cascade,
        the student's own row, without the deferrals, which are counted as production calls)."""
        if in_service is None:
            return 0.0
        row = self.latest_models.get(in_service.model_name, {})
        student = self.latest_models.get(row.get("student") or "", row)
        return (student.get("cost_per_1k") or 0.0) / 1000

    # --- output ----------------------------------------------------------------------------------------
    def trajectory(self) -> dict:
        cost_ratio = None
        if self.weeks and self.weeks[-1]["cost"]["cumulative_production_only_usd"]:
            last = self.weeks[-1]["cost"]
            cost_ratio = last["cumulative_usd"] / last["cumulative_production_only_usd"]
        promotions = [w["week"] for w in self.weeks if any(e["kind"] == "promote" for e in w["events"])]
        below, run_length = 0, 0
        for w in self.weeks:
            failing = any(e["kind"] == "rollback" for e in w["events"])
            run_length = run_length + 1 if failing else 0
            below = max(below, run_length)
        cycles = [w["reviews"]["total"] for w in self.weeks if w["cycle_id"]]
        points = self.settings.gate.max_drop_points
        return {
            "flywheel_id": self.folder.name,
            "config": self.config.name,
            "seed": self.config.seed,
            "weeks_total": self.settings.weeks,
            "launch_week": self.world.launch_week,
            "gate": {
                "max_drop_points": self.config.eval.max_drop_points if points is None else points,
                "min_agreement": self.settings.gate.min_agreement,
            },
            "weeks": self.weeks,
            "summary": {
                "first_promotion_week": promotions[0] if promotions else None,
                "cost_ratio": cost_ratio,
                "reviews_per_cycle_max": max(cycles) if cycles else 0,
                "weeks_below_gate_in_a_row_max": below,
                "cycles": len(cycles),
                "seconds": round(self.seconds_before + time.perf_counter() - self.started, 1),
            },
        }

    def write_trajectory(self, final: bool = False) -> None:
        trajectory = self.trajectory()
        atomic_write_json(self.folder / TRAJECTORY, trajectory)
        if final:
            from flywheel.weeks.report import write_report  # matplotlib: only once, at the end

            write_report(trajectory, self.folder)  # trajectory.png and flywheel.html


def run_flywheel(
    config_path: str | Path = REPO_ROOT / "configs" / "flywheel.yaml",
    runs_root: str | Path = "runs",
    log: Callable[[str], None] = print,
    resume: str | Path | None = None,
) -> Path:
    """Run the weeks (or, with `resume`, the rest of a stopped flywheel's); returns the flywheel's folder."""
    return Flywheel(Path(config_path), Path(runs_root), log, Path(resume) if resume else None).run()
