"""The demo world released week by week, with simulated users who react to whichever router answered them.

The whole N-week world is generated once (`generator.simulate_demo`, written like `generate_demo` into a
folder that is reused while its files match) and then handed out one week at a time:

- `log_lines(k)`: week k's raw production log lines, as generated (malformed and duplicate lines included),
  for the weeks the simulated production LLM serves; they go through the real ingest path.
- `questions(k)`: week k's well-formed, de-duplicated questions with what production decided and logged,
  for the weeks another router serves them.
- `react(question, routed_expert)`: the user's verdict on any routing decision, by the generator's behaviour
  parameters; for the production model's own decision, exactly what the log holds.
- `truth_row(question, routed_expert)`: the hidden truth of that decision, in hidden_truth.jsonl's format.

Synthetic: the users, their questions and their verdicts are simulated (seeded); see data/DATA_CARD.md.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from flywheel.demo.generator import (
    DemoSimulation,
    _feedback,
    _Question,
    outcome_odds,
    simulate_demo,
    write_demo,
)

__all__ = ["Question", "Reaction", "WeeklyWorld", "question_key"]

LOGS, TRUTH, META = "logs.jsonl", "hidden_truth.jsonl", "demo_meta.json"


def question_key(text: str) -> str:
    """A user message as a routing prompt carries it: whitespace collapsed, clipped like
    `core.prompts.RoutingPrompt` (600 characters), so a question is found whichever way it was sent."""
    return " ".join(str(text).split())[:600]


@dataclass(frozen=True)
class Question:
    """One well-formed interaction of the world: the question, its hidden truth and what production did."""

    id: str  # the world's ix-... id
    week: int  # 1-based
    timestamp: datetime  # timezone-aware (UTC)
    user_id: str
    session_id: str
    request: dict[str, Any] = field(compare=False, repr=False)  # as logged: router system prompt + question
    text: str
    true_expert: str | None  # None: out of scope
    template: str
    confuser: bool
    production_expert: str  # what the simulated 70B routed
    production_feedback: dict[str, Any] | None = field(compare=False)  # as logged; None: never rated
    production_cause: str  # the truth's cause for the production decision ("none" when all went well)


@dataclass(frozen=True)
class Reaction:
    """A user's verdict on one routing decision. `satisfied` is None when the user does not rate (as in
    hidden_truth.jsonl); `cause` is what really went wrong ("none" when nothing did), rated or not;
    `feedback` is the body for POST /v1/feedback (thumbs, rating, comment), None when the user does not
    rate."""

    satisfied: bool | None
    cause: str
    feedback: dict[str, Any] | None


@dataclass(frozen=True)
class _Entry:
    question: Question
    generated: _Question  # the generator's view: style, launch phase, topic (the user's behaviour needs them)
    truth: dict[str, Any]
    logged_feedback: dict[str, Any] | None  # kept apart from the Question a caller may alter


class WeeklyWorld:
    """A generated demo world, released week by week (weeks are 1-based, 7 days each from `start`)."""

    def __init__(self, folder: Path, simulation: DemoSimulation):
        self.folder = Path(folder)
        self.seed: int = simulation.meta["seed"]
        world = simulation.world
        self.weeks: int = world.weeks
        self.launch_week: int = world.launch_week
        self.experts: list[str] = list(world.catalog)
        self.meta: dict[str, Any] = simulation.meta
        self.start = date.fromisoformat(self.meta["args"]["start"])
        truth = {row["id"]: row for row in simulation.truth}
        self._lines: list[list[str]] = [[] for _ in range(self.weeks)]
        self._entries: dict[str, _Entry] = {}
        self._questions: list[list[Question]] = [[] for _ in range(self.weeks)]
        for position, copy_number, text in simulation.lines:
            event = simulation.events[position]  # a duplicate sits right after this event's line
            self._lines[event.week - 1].append(text)
            if copy_number or position in simulation.malformed_at:
                continue
            record = json.loads(text)
            question = Question(
                id=record["id"],
                week=event.week,
                timestamp=event.ts,
                user_id=record["user_id"],
                session_id=record["session_id"],
                request=record["request"],
                text=event.question.text,
                true_expert=event.question.true_expert,
                template=event.question.template,
                confuser=event.question.confuser,
                production_expert=record["routed_expert"],
                production_feedback=record["feedback"],
                production_cause=truth[record["id"]]["cause"],
            )
            logged_feedback = copy.deepcopy(record["feedback"])
            self._entries[question.id] = _Entry(question, event.question, truth[question.id], logged_feedback)
            self._questions[event.week - 1].append(question)

    @classmethod
    def create(
        cls,
        folder: Path | str,
        experts: dict[str, str],
        n_interactions: int,
        weeks: int,
        start: str = "2026-09-07",
        seed: int = 7,
    ) -> WeeklyWorld:
        """The world of these generator arguments; its files (logs.jsonl, hidden_truth.jsonl,
        demo_meta.json, as `generate_demo` writes them) are written into `folder` unless already there."""
        simulation = simulate_demo(dict(experts), n_interactions, weeks, start, seed)
        folder = Path(folder)
        if not _folder_holds(folder, simulation):
            write_demo(folder, simulation)
        return cls(folder, simulation)

    # --- the calendar ------------------------------------------------------------------------------------

    def week_start(self, k: int) -> date:
        """The first day of week k."""
        return self.start + timedelta(days=7 * (self._week(k) - 1))

    def _week(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.weeks:
            raise ValueError(f"week {k!r} is not one of this world's weeks (1..{self.weeks})")
        return k

    # --- what each week brings ------------------------------------------------------------------------------

    def log_lines(self, k: int) -> list[str]:
        """Week k's raw logs.jsonl lines (without newline) in file order, malformed and duplicate lines
        included."""
        return list(self._lines[self._week(k) - 1])

    def questions(self, k: int) -> list[Question]:
        """Week k's well-formed questions, each once, in log order."""
        return list(self._questions[self._week(k) - 1])

    def all_questions(self) -> list[Question]:
        return [q for week in self._questions for q in week]

    def question(self, interaction_id: str) -> Question:
        return self._entry(interaction_id).question

    def _entry(self, interaction_id: str) -> _Entry:
        try:
            return self._entries[interaction_id]
        except KeyError:
            raise KeyError(f"{interaction_id!r} is not a well-formed question of this world") from None

    # --- the users ----------------------------------------------------------------------------------------

    def react(self, question: Question, routed_expert: str) -> Reaction:
        """The user's verdict when `routed_expert` answered `question` (the same arguments, the same verdict).

        The production model's own decision gets exactly what the log holds. Any other decision is drawn
        from the generator's behaviour parameters with an RNG seeded by (seed, question id, routed expert);
        whether the user rates at all is the user's trait: they rate iff the logged record has feedback."""
        entry = self._entry(question.id)
        if not isinstance(routed_expert, str):
            raise TypeError(f"routed_expert must be an expert name, got {routed_expert!r}")
        if routed_expert == entry.question.production_expert:
            logged = copy.deepcopy(entry.logged_feedback)
            return Reaction(entry.truth["satisfied"], entry.truth["cause"], logged)
        digest = hashlib.sha256(f"{self.seed}\0{question.id}\0{routed_expert}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "little"))
        unhappy_cause, p_unsatisfied, p_retrieval = outcome_odds(entry.generated, routed_expert)
        if rng.random() < p_unsatisfied:
            satisfied = False
            cause = unhappy_cause or ("retrieval" if rng.random() < p_retrieval else "generation")
        else:
            satisfied, cause = True, "none"
        if entry.logged_feedback is None:
            return Reaction(None, cause, None)
        return Reaction(satisfied, cause, _feedback(entry.generated, routed_expert, satisfied, cause, rng))

    def truth_row(self, question: Question, routed_expert: str) -> dict[str, Any]:
        """The hidden truth of a routing decision, as a hidden_truth.jsonl row keyed by the world's id."""
        reaction = self.react(question, routed_expert)
        return {
            "id": question.id,
            "true_expert": question.true_expert,
            "cause": reaction.cause,
            "satisfied": reaction.satisfied,
            "confuser": question.confuser,
            "template": question.template,
        }

    # --- the production LLM's view ----------------------------------------------------------------------

    def production_answer(self, text: str) -> str | None:
        """What the simulated production LLM routes a user message to (None: not a question of this world).
        A text asked several times with different logged decisions gets the most frequent one (the earliest
        on a tie): an LLM at temperature 0 answers the same text the same way."""
        return self._production_answers.get(question_key(text))

    @functools.cached_property
    def _production_answers(self) -> dict[str, str]:
        votes: dict[str, Counter[str]] = {}
        for q in self.all_questions():  # in log order: Counter keeps first-seen order for ties
            votes.setdefault(question_key(q.text), Counter())[q.production_expert] += 1
        return {key: counter.most_common(1)[0][0] for key, counter in votes.items()}


def _folder_holds(folder: Path, simulation: DemoSimulation) -> bool:
    """Whether `folder` already holds exactly this world's files (meta, logs and truth)."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if meta != json.loads(json.dumps(simulation.meta)):
        return False
    for name, expected in ((LOGS, simulation.logs_bytes), (TRUTH, simulation.truth_bytes)):
        try:
            if (folder / name).read_bytes() != expected:
                return False
        except OSError:
            return False
    return True
