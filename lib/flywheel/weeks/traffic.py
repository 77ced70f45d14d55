"""One week of the world's traffic, delivered the way it would reach the workbench.

While the production LLM serves (nothing promoted), the week's log lines are what it logged, as the demo
generator writes them: they go through the real ingest (PII masking, quarantine). Once a router is promoted,
each question goes over HTTP to the router service, which answers and logs it; the simulated user reacts to
the expert it was sent to and posts feedback to `/v1/feedback`. Either way the hidden truth of every delivered
interaction is appended to the replay folder, where the cycles' simulated expert panel reads it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from flywheel.collect.ingest import ingest_with_config
from flywheel.core.config import Config
from flywheel.core.files import atomic_write_text
from flywheel.core.store import Store
from flywheel.demo.weekly import Question, WeeklyWorld

LOGS, TRUTH = "logs.jsonl", "hidden_truth.jsonl"
SESSION_HEADER = "x-flywheel-session"


@dataclass
class SimulatedNow:
    """The question being served: the service's clock and interaction id come from it, so that logged
    timestamps fall in the simulated week and ids (hence audit samples) are the same in every run. The clock
    stays at the latest question's time between requests (the service's shadow worker reads it after the
    answer)."""

    question: Question | None = None
    latest: datetime | None = None

    def serve(self, question: Question) -> None:
        self.question, self.latest = question, question.timestamp

    def clock(self) -> datetime:
        if self.latest is None:
            raise RuntimeError("the simulated clock was read before the first simulated request")
        return self.latest

    def interaction_id(self) -> str:
        if self.question is None:
            raise RuntimeError("an interaction id was asked for outside a simulated request")
        return self.question.id


@dataclass
class Delivery:
    """What one week delivered."""

    week: int
    traffic: int = 0
    rated: int = 0
    satisfied: int = 0
    served_by: str = "production"  # "production" (its own logs) or "service"
    ingest: dict[str, Any] = field(default_factory=dict)

    @property
    def satisfied_share(self) -> float | None:
        return self.satisfied / self.rated if self.rated else None


def _truth_lines(world: WeeklyWorld, decided: list[tuple[Question, str | None]]) -> list[str]:
    return [json.dumps(world.truth_row(q, routed), sort_keys=True) for q, routed in decided]


def _write_week(replay: Path, name: str, lines: list[str]) -> None:
    """One week's file in the replay folder, then the folder's logs and hidden truth rebuilt from all the
    weeks' files: delivering a week again (a resumed run) leaves the same files."""
    weeks = replay / "weeks"
    weeks.mkdir(parents=True, exist_ok=True)
    atomic_write_text(weeks / name, "".join(line.rstrip("\n") + "\n" for line in lines))
    for target, pattern in ((LOGS, "week-*.jsonl"), (TRUTH, "truth-*.jsonl")):
        atomic_write_text(replay / target, "".join(p.read_text("utf-8") for p in sorted(weeks.glob(pattern))))


def deliver_from_production(
    world: WeeklyWorld, week: int, replay: Path, store: Store, config: Config
) -> Delivery:
    """The production LLM's own logs of the week: written to the replay folder and ingested now (so that
    `flywheel status` sees them; the next cycle's collect finds them ingested already). Idempotent."""
    lines = world.log_lines(week)
    questions = world.questions(week)
    _write_week(
        replay, f"truth-{week:02d}.jsonl", _truth_lines(world, [(q, q.production_expert) for q in questions])
    )
    _write_week(replay, f"week-{week:02d}.jsonl", lines)
    report = ingest_with_config(store, [replay / "weeks" / f"week-{week:02d}.jsonl"], config, progress=False)
    rated = [q for q in questions if q.production_feedback is not None]
    satisfied = sum(world.react(q, q.production_expert).satisfied is True for q in rated)
    return Delivery(week, len(questions), len(rated), satisfied, "production", report.as_dict())


def deliver_through_service(
    world: WeeklyWorld,
    week: int,
    replay: Path,
    base_url: str,
    now: SimulatedNow,
    store: Store,
    timeout_s: float = 60.0,
) -> Delivery:
    """Each question of the week to the router service (`base_url` ends in /v1), in time order, one at a
    time (the simulated clock is the question's); the user's feedback, when they give one, to /v1/feedback.
    A question the store holds already (a resumed run) is not asked again: its logged decision stands, and its
    feedback is sent only when the store has none."""
    questions = world.questions(week)
    delivery = Delivery(week, len(questions), served_by="service")
    logged = store.interactions_frame(["id", "routed_expert"]).set_index("id")["routed_expert"]
    logged = logged[logged.index.isin([q.id for q in questions])]
    rated_before = set(store.feedback_frame()["interaction_id"]) if len(logged) else set()
    decided: list[tuple[Question, str | None]] = []
    with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
        for question in questions:
            if question.id in logged.index:
                routed, interaction_id = logged[question.id], question.id
            else:
                routed, interaction_id = _ask(client, now, question, week)
            reaction = world.react(question, routed)
            if reaction.feedback is not None:
                if interaction_id not in rated_before:
                    sent = client.post(
                        "/feedback", json={"interaction_id": interaction_id, **reaction.feedback}
                    )
                    if sent.status_code != 200:
                        raise RuntimeError(
                            f"week {week}: feedback on {interaction_id} got {sent.status_code}: {sent.text}"
                        )
                delivery.rated += 1
                delivery.satisfied += reaction.satisfied is True
            decided.append((question, routed))
        now.question = None
    _write_week(replay, f"truth-{week:02d}.jsonl", _truth_lines(world, decided))
    return delivery


def _send_feedback(client: httpx.Client, interaction_id: str, feedback: dict, week: int) -> None:
    sent = client.post("/feedback", json={"interaction_id": interaction_id, **feedback})
    if sent.status_code != 200:
        raise RuntimeError(f"week {week}: feedback on {interaction_id} got {sent.status_code}: {sent.text}")


def _ask(client: httpx.Client, now: SimulatedNow, question: Question, week: int) -> tuple[str, str]:
    """The service's decision on one question and the interaction id it logged it under."""
    now.serve(question)
    body = {**question.request, "user": question.user_id, "stream": False}
    answer = client.post("/chat/completions", json=body, headers={SESSION_HEADER: question.session_id})
    if answer.status_code != 200:
        raise RuntimeError(
            f"week {week}: the router service answered {answer.status_code} to {question.id}: "
            f"{answer.text[:300]}"
        )
    routed = answer.json()["choices"][0]["message"]["content"]
    interaction_id = answer.headers["X-Interaction-Id"]
    if interaction_id != question.id:
        raise RuntimeError(f"the service logged {question.id} as {interaction_id}: not simulated ids")
    return routed, interaction_id
