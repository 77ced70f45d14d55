"""The demo world as data: what employees say (phrasebook.yaml) and how the world behaves (behaviour.yaml).

Both files are validated on load, so a misspelt key or an unquoted number where text belongs fails here
rather than in some seed's rare draw. Mappings keep the order written: the generator draws from them in
that order.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

__all__ = ["Behaviour", "Paraphrase", "Phrasebook", "behaviour", "phrasebook"]

WORLD_DIR = Path(__file__).parent


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NumericSlot(_Data):
    """A slot filled with ``prefix`` and random digits (ticket numbers and the like)."""

    prefix: str
    digits: int


class Confuser(_Data):
    """A cross-domain question: ``truth`` is the expert that owns it, ``alts`` where a router may send it."""

    topic: str
    truth: str
    alts: list[str]
    templates: list[str]


class OutOfScopeKind(_Data):
    kind: str
    texts: list[str]


class Frame(_Data):
    """A question frame: a question starting with one of ``match`` may be re-asked in one of ``forms``."""

    match: list[str]
    forms: list[str]  # each holds {x}: the rest of the question


class Paraphrase(_Data):
    """Paraphrase operators' data: frames, synonym groups, and politeness, filler and tail phrases."""

    frames: list[Frame]
    synonyms: list[list[str]]
    politeness: list[str]
    fillers: list[str]
    tails: list[str]


class Phrasebook(_Data):
    slots: dict[str, list[str]]
    numeric_slots: dict[str, NumericSlot]
    intents: dict[str, dict[str, list[str]]]  # expert -> topic -> templates
    short: dict[str, dict[str, str]]  # expert -> short query -> topic
    distractors: dict[str, list[str]]
    generic_context: list[str]
    openers: list[str]
    closers: list[str]
    paraphrase: Paraphrase
    confusers: list[Confuser]
    launch_product: str
    launch_intents: dict[str, dict[str, list[str]]]
    out_of_scope: list[OutOfScopeKind]
    oos_routes: dict[str, list[str]]
    neighbors: dict[str, list[str]]
    team_names: dict[str, str]
    good_answers: dict[str, list[str]]
    retrieval_answers: list[str]
    generation_answers: dict[str, list[str]]
    launch_retrieval_answers: list[str]
    off_topic_answers: dict[str, str]
    oos_answers: list[str]
    oos_good_answers: list[str]
    comments: dict[str, list[str]]
    first_names: list[str]
    last_names: list[str]
    pii_sentences: dict[str, list[str]]
    pii_by_expert: dict[str, dict[str, int]]


class Traffic(_Data):
    users: int
    out_of_scope_share: float
    session_length_weights: dict[int, float]
    same_expert_follow_up: float
    expert_share: dict[str, float]
    unlisted_expert_share: float
    day_weights: list[float]


class LaunchUnsatisfied(_Data):
    unsatisfied: float
    retrieval: float


class Launch(_Data):
    week: int
    volume: float
    session_share: float
    session_mix: dict[str, float]
    intent_share: dict[str, dict[str, float]]  # phase ("launch" / "after") -> expert -> share
    unsatisfied: dict[str, LaunchUnsatisfied]  # phase -> rates


class ParaphraseRates(_Data):
    """Probability of each paraphrase operator, per question it can apply to."""

    frame: float
    synonym: float  # per matching synonym
    reorder: float
    politeness: float
    filler: float
    tail: float


class Query(_Data):
    confuser_share: float
    style_weights: dict[str, float]
    typo_rate: float
    pii_rate: float
    paraphrase: ParaphraseRates


class Misroute(_Data):
    by_style: dict[str, float]
    typo_bonus: float


class Satisfaction(_Data):
    unsatisfied_when_misrouted: float
    unsatisfied_when_routed_right: dict[str, float]
    unlisted_expert_unsatisfied: float
    style_bonus: dict[str, float]
    retrieval_share: dict[str, float]
    unlisted_expert_retrieval_share: float
    out_of_scope_unsatisfied: dict[str, float]
    other_out_of_scope_unsatisfied: float


class Feedback(_Data):
    no_feedback_share: float  # interactions the user never rated: logged without feedback
    thumbs_share: float
    comment_rate: dict[str, float]  # "satisfied" / "unsatisfied" -> rate


class Range(_Data):
    low: int
    high: int  # included


class LogHygiene(_Data):
    malformed: Range
    duplicates: Range


class Behaviour(_Data):
    traffic: Traffic
    launch: Launch
    query: Query
    misroute: Misroute
    satisfaction: Satisfaction
    feedback: Feedback
    log_hygiene: LogHygiene


def _load(name: str) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load((WORLD_DIR / name).read_text(encoding="utf-8"), Loader=loader)


@functools.cache
def phrasebook() -> Phrasebook:
    return Phrasebook.model_validate(_load("phrasebook.yaml"))


@functools.cache
def behaviour() -> Behaviour:
    return Behaviour.model_validate(_load("behaviour.yaml"))
