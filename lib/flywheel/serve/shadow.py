"""Decisions made in shadow beside the router in service, logged to the store's `shadow_decisions` table and
never answered with:

- **the production model in shadow** (`serve.production_shadow_share`): of the queries a small router
  answered, a share sampled by interaction id (`in_production_shadow`: the same id is always in or out) is
  also sent to the production endpoint; its decision is logged with role "production" under the endpoint's
  model name. Queries the production model answered itself (it serves, or a cascade deferred them) are never
  asked twice: their interaction already holds its decision.
- **the candidate in shadow** (the registry's shadow stage): it decides every logged query; its decisions are
  logged with role "candidate" under its registry name (see `flywheel.serve.routing.ShadowCandidate` for a
  cascade's deferrals).

`ShadowWorker` does this on a thread of its own, after the answer: a request handler hands it the committed
interaction (so the rows' foreign key holds) and returns at once. A failing production call or candidate is
logged and counted (/health), never the user's problem; rows that the store cannot take in time are dropped
and counted. On shutdown the worker finishes what is queued.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flywheel.core.store import Store
from flywheel.serve.records import next_batch, with_retries
from flywheel.serve.routing import Decision, NoRouterAvailable, RouterProvider

log = logging.getLogger("flywheel.serve")


def in_production_shadow(interaction_id: str, share: float) -> bool:
    """Whether the production model decides this interaction in shadow: a uniform draw from the id's hash,
    so re-runs with the same ids agree and about `share` of all ids are in."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    draw = int.from_bytes(hashlib.sha256(interaction_id.encode("utf-8")).digest()[:8], "big") / 2**64
    return draw < share


def utc(when: datetime) -> datetime:
    """A clock's reading as an aware UTC datetime (a naive one is taken as UTC)."""
    if not isinstance(when, datetime):
        raise TypeError(f"the service's clock must return a datetime, got {type(when).__name__}")
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """One answered and logged query: its interaction id, its question and the decision it was answered
    with."""

    interaction_id: str
    question: str
    decision: Decision


class ShadowWorker:
    """Shadow decisions for answered queries, on a thread of its own (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        provider: RouterProvider,
        *,
        production_share: float = 0.0,
        clock: Callable[[], datetime] | None = None,
        max_batch: int = 256,
        max_pending: int = 20_000,
        give_up_s: float = 60.0,
    ):
        if not 0.0 <= production_share <= 1.0:
            raise ValueError(f"production_shadow_share is a share between 0 and 1, got {production_share}")
        self.store, self.provider = store, provider
        self.production_share = float(production_share)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.max_batch, self.max_pending, self.give_up_s = max_batch, max_pending, give_up_s
        self._queue: queue.SimpleQueue[ShadowJob | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._production_router: Any = None
        self._unloadable: str | None = None  # the candidate folder that failed to load (logged once)
        self.candidate_name: str | None = None
        self.counts = {
            "pending": 0,
            "dropped": 0,  # queue full: the service was too busy to decide in shadow
            "write_failures": 0,  # rows the store did not take in time
            "production_asked": 0,
            "production_logged": 0,
            "production_failures": 0,
            "candidate_logged": 0,
            "candidate_student_guesses": 0,
            "candidate_failures": 0,
        }

    # --- the handlers' side ------------------------------------------------------------------------
    def submit(self, job: ShadowJob) -> None:
        """Queue a logged query for its shadow decisions; returns at once (dropped when the queue is full)."""
        with self._lock:
            if self.counts["pending"] >= self.max_pending:
                self.counts["dropped"] += 1
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="flywheel-shadow", daemon=True)
                self._thread.start()
            self.counts["pending"] += 1
        self._queue.put(job)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every queued query has been decided and written; False when `timeout` ran out."""
        with self._idle:
            return self._idle.wait_for(lambda: self.counts["pending"] == 0, timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Finish what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def describe(self) -> dict[str, Any]:
        """What /health reports: the shadow settings and counts."""
        with self._lock:
            counts = dict(self.counts)
        return {
            "pending": counts["pending"],
            "dropped": counts["dropped"],
            "write_failures": counts["write_failures"],
            "production": {
                "model": self.provider.production_model,
                "share": self.production_share,
                "asked": counts["production_asked"],
                "logged": counts["production_logged"],
                "failures": counts["production_failures"],
            },
            "candidate": {
                "model": self.candidate_name,
                "logged": counts["candidate_logged"],
                "student_guesses": counts["candidate_student_guesses"],
                "failures": counts["candidate_failures"],
            },
        }

    # --- the worker thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = next_batch(self._queue, self.max_batch)
            if not batch:
                return
            try:
                self._process(batch)
            except Exception:  # never let the thread die: the next batch gets its chance
                log.exception("shadow decisions failed for a batch of %d queries", len(batch))
            finally:
                with self._idle:
                    self.counts["pending"] -= len(batch)
                    self._idle.notify_all()

    def _count(self, **increments: int) -> None:
        with self._lock:
            for key, value in increments.items():
                self.counts[key] += value

    def _process(self, batch: list[ShadowJob]) -> None:
        decided_at = utc(self.clock())
        production_rows, known = self._production(batch)
        candidate_rows = self._candidate(batch, known)
        rows = [
            {"interaction_id": batch[i].interaction_id, "model": d.model, "role": role, "decision": d.expert,
             "decided_at": decided_at}
            for role, decided in (("production", production_rows), ("candidate", candidate_rows))
            for i, d in decided
        ]  # fmt: skip
        if not rows:
            return
        try:
            with_retries(lambda: self.store.add_shadow_decisions(rows), self.give_up_s)
        except Exception as err:
            log.error("could not log %d shadow decision(s): %s", len(rows), err)
            self._count(write_failures=len(rows))
            return
        guesses = sum(1 for _, d in candidate_rows if d.model != self.candidate_name)
        self._count(
            production_logged=len(production_rows),
            candidate_logged=len(candidate_rows),
            candidate_student_guesses=guesses,
        )

    def _production(self, batch: list[ShadowJob]) -> tuple[list[tuple[int, Decision]], dict[int, str | None]]:
        """Ask the production endpoint for the sampled queries a small router answered. Returns the rows
        to log and every production decision known for the batch (by position), the answered ones too."""
        model = self.provider.production_model
        if model is None:
            return [], {}
        known = {i: job.decision.expert for i, job in enumerate(batch) if job.decision.model == model}
        asked = [
            i
            for i, job in enumerate(batch)
            if i not in known and in_production_shadow(job.interaction_id, self.production_share)
        ]
        if not asked:
            return [], known
        rows = []
        for i in asked:  # one by one: a failing call loses its own query only
            self._count(production_asked=1)
            try:
                if self._production_router is None:
                    self._production_router = self.provider.production_router()
                (expert,) = self._production_router.predict([batch[i].question])
            except Exception as err:  # the client's errors vary; the user's answer went out already
                log.warning(
                    "the production model in shadow failed for interaction %s: %s",
                    batch[i].interaction_id,
                    type(err).__name__,
                )
                self._count(production_failures=1)
                continue
            known[i] = expert
            rows.append((i, Decision(expert, model)))
        return rows, known

    def _candidate(self, batch: list[ShadowJob], known: dict[int, str | None]) -> list[tuple[int, Decision]]:
        """The candidate in shadow's decisions on the batch (none when there is no candidate)."""
        try:
            candidate = self.provider.shadow_candidate()
        except NoRouterAvailable as err:
            folder = str(err)
            if folder != self._unloadable:  # once per candidate, not once per batch
                log.error("%s", err)
                self._unloadable = folder
            self._count(candidate_failures=len(batch))
            return []
        if candidate is None:
            self.candidate_name = None
            return []
        self.candidate_name = candidate.name
        try:
            decisions = candidate.decide([job.question for job in batch], known)
        except Exception:
            log.exception("the candidate in shadow %s failed to decide a batch", candidate.name)
            self._count(candidate_failures=len(batch))
            return []
        return list(enumerate(decisions))
