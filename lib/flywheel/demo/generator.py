"""Seeded generator of the demo world: production router logs, user feedback and the hidden truth.

The story: an employee-support assistant whose router (a 70B LLM) sends each question to one expert agent.
The generator writes three files:

- ``logs.jsonl``: what production logged (OpenAI request/response, routing decision, latency, tokens,
  feedback), in timestamp order, with a few malformed and duplicate lines mixed in like a real log.
- ``hidden_truth.jsonl``: per good interaction, the true expert and the true cause of an unsatisfactory
  rating. Only the simulated expert panel and judge scoring may read it; it is never a training label.
- ``demo_meta.json``: seed, arguments, counts and measured proportions.

Same arguments give byte-identical files: all randomness comes from one ``random.Random(seed)`` and JSON is
dumped with sorted keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from flywheel.demo import phrasebook as pb
from flywheel.demo.baseline import tfidf_baseline_accuracy

__all__ = ["PRODUCTION_MODEL", "generate_demo", "router_system_prompt", "tfidf_baseline_accuracy"]

PRODUCTION_MODEL = "llama-3.1-70b-instruct"
GENERATOR_VERSION = "1"

# --- traffic shape ------------------------------------------------------------------------------------------
N_USERS = 150
OUT_OF_SCOPE_SHARE = 0.068
SESSION_LENGTHS = (1, 2, 3, 4)
SESSION_LENGTH_WEIGHTS = (0.50, 0.28, 0.14, 0.08)
SAME_EXPERT_FOLLOW_UP = 0.45  # a follow-up question in a session often stays with the same expert
BASE_SHARE = {
    "it_help": 0.23,
    "hr_benefits": 0.16,
    "payroll_equity": 0.14,
    "travel_expenses": 0.14,
    "product_docs": 0.13,
    "facilities": 0.12,
    "finance_earnings": 0.08,
}
LAUNCH_WEEK = 4  # 1-based; clipped to the number of weeks
# The launch adds traffic on top of the usual: extra sessions about the new SDK, to docs and to IT.
LAUNCH_WEEK_VOLUME = 1.4
LAUNCH_SESSION_SHARE = 0.4  # of the launch week's sessions
LAUNCH_SESSION_MIX = {"product_docs": 0.65, "it_help": 0.35}
LAUNCH_INTENT_SHARE = {"launch": {"product_docs": 0.55, "it_help": 0.35}, "after": {"product_docs": 0.12}}
DAY_WEIGHTS = (1.0, 1.1, 1.1, 1.0, 0.75)  # Monday..Friday

# Query styles of an in-scope question (the confuser share is taken first).
CONFUSER_SHARE = 0.15
STYLE_WEIGHTS = {"plain": 0.60, "short": 0.16, "long": 0.24}
TYPO_RATE = 0.08
PII_RATE = 0.05

# --- production router behaviour (probability of a misroute by query style) ---------------------------------
MISROUTE = {
    "plain": 0.005,
    "short": 0.022,
    "long_distractor": 0.05,
    "long": 0.01,
    "confuser": 0.19,
    "launch": 0.02,
}
MISROUTE_TYPO_BONUS = 0.01

# --- user satisfaction --------------------------------------------------------------------------------------
UNSAT_MISROUTED = 0.88
UNSAT_CORRECT = {
    "it_help": 0.34,
    "hr_benefits": 0.33,
    "payroll_equity": 0.33,
    "travel_expenses": 0.34,
    "product_docs": 0.38,
    "facilities": 0.30,
    "finance_earnings": 0.30,
}
UNSAT_STYLE_BONUS = {"long": 0.04, "short": 0.03}
RETRIEVAL_SHARE = {
    "product_docs": 0.62,
    "hr_benefits": 0.55,
    "travel_expenses": 0.55,
    "finance_earnings": 0.4,
}
LAUNCH_UNSAT = {"launch": (0.62, 0.85), "after": (0.42, 0.7)}  # (unsatisfied, retrieval share of those)
UNSAT_OOS = {"greeting": 0.4, "thanks": 0.2, "gibberish": 0.7}
UNSAT_OOS_DEFAULT = 0.8
THUMBS_SHARE = 0.85
COMMENT_RATE = {"unsatisfied": 0.25, "satisfied": 0.05}

TRUTH_CAUSES = ("none", "routing", "retrieval", "generation", "out_of_scope")
N_MALFORMED = (6, 10)
N_DUPLICATES = (8, 12)


@dataclass
class _Question:
    """A generated question before it is routed: text, truth and how it was built."""

    text: str
    true_expert: str | None
    topic: str
    style: str  # plain / short / long / long_distractor / confuser / launch / oos:<kind>
    confuser: bool = False
    alts: tuple[str, ...] = ()  # where a confused router would send it
    launch: str | None = None  # "launch" or "after" for Helios 3.0 questions
    typo: bool = False
    pii: bool = False
    slots: dict[str, str] = field(default_factory=dict)  # slot values used, so the answer can echo them


@dataclass
class _Event:
    """One interaction in time, before serialisation."""

    ts: datetime
    week: int
    user: str
    session_key: int
    question: _Question


def router_system_prompt(experts: dict[str, str]) -> str:
    """The production router's system prompt: instructions plus the expert catalog."""
    lines = [
        "You are the router of the company's employee-support assistant.",
        "Read the employee's question and reply with the name of the one expert agent that should answer it.",
        "Reply with the expert name only, exactly as written below.",
        "",
        "Experts:",
    ]
    lines += [f"- {name}: {description}" for name, description in experts.items()]
    return "\n".join(lines)


# --- text ---------------------------------------------------------------------------------------------------


class _Slots(dict):
    """Fills ``{slot}`` placeholders on first use; the same slot repeats its value within one text."""

    def __init__(self, rng: random.Random, **fixed: str) -> None:
        super().__init__(fixed)
        self.rng = rng

    def __missing__(self, key: str) -> str:
        if key in pb.SLOTS:
            value = self.rng.choice(pb.SLOTS[key])
        elif key in pb.NUMERIC_SLOTS:
            prefix, digits = pb.NUMERIC_SLOTS[key]
            value = prefix + "".join(str(self.rng.randrange(10)) for _ in range(digits))
        elif key == "section":
            value = f"{self.rng.randint(2, 9)}.{self.rng.randint(1, 6)}"
        else:
            raise KeyError(key)
        self[key] = value
        return value


def _fill(template: str, rng: random.Random, slots: dict[str, str] | None = None, **fixed: str) -> str:
    """Fill a template; pass ``slots`` to collect the values used."""
    filler = _Slots(rng, **fixed)
    text = template.format_map(filler)
    if slots is not None:
        slots.update(filler)
    return text


_KEYBOARD_NEIGHBOURS = dict(zip("qwertyuiopasdfghjklzxcvbnm", "wqrtyuiopsadfghjkkzxcvbnmn", strict=True))


def _typo(text: str, rng: random.Random) -> str:
    """Swap, drop, double or fat-finger one letter in one or two longer words."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not candidates:
        return text
    for i in rng.sample(candidates, k=min(len(candidates), 1 if rng.random() < 0.7 else 2)):
        w = words[i]
        j = rng.randrange(1, len(w) - 1)
        op = rng.choice(("swap", "drop", "double", "key"))
        if op == "swap":
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        elif op == "drop":
            w = w[:j] + w[j + 1 :]
        elif op == "double":
            w = w[:j] + w[j] + w[j:]
        else:
            w = w[:j] + _KEYBOARD_NEIGHBOURS.get(w[j].lower(), w[j]) + w[j + 1 :]
        words[i] = w
    return " ".join(words)


def _style_case(text: str, rng: random.Random) -> str:
    """Employees type the way they type: lower case, no question mark, doubled punctuation."""
    r = rng.random()
    if r < 0.30:
        text = text.lower()
    elif r < 0.80:
        text = text[:1].upper() + text[1:]
    if text and text[-1].isalnum():
        p = rng.random()
        text += "?" if p < 0.45 else ("??" if p < 0.52 else ("!" if p < 0.55 else ""))
    return text


def _decorate(core: str, rng: random.Random, opener: float = 0.2, closer: float = 0.15) -> str:
    text = _style_case(core, rng)
    if rng.random() < opener:
        text = rng.choice(pb.OPENERS) + text
    if rng.random() < closer:
        text = f"{text} {rng.choice(pb.CLOSERS)}"
    return text


def _long(core: str, expert: str, experts: list[str], rng: random.Random) -> tuple[str, str | None]:
    """A rambling multi-sentence question; often opens with context from another expert's domain."""
    parts: list[str] = []
    if rng.random() < 0.5:
        parts.append(rng.choice(pb.OPENERS).strip())
    context = rng.sample(pb.GENERIC_CONTEXT, 2)
    if rng.random() < 0.6:
        parts.append(_fill(context[0], rng))
    distractor = None
    others = [e for e in experts if e != expert and e in pb.DISTRACTORS]
    if others and rng.random() < 0.65:
        distractor = rng.choice(others)
        lead = _fill(rng.choice(pb.DISTRACTORS[distractor]), rng)
        parts.append(f"{lead} {core[:1].lower() + core[1:]}?")
    else:
        parts.append(core[:1].upper() + core[1:] + "?")
    if rng.random() < 0.3:
        parts.append(_fill(context[1], rng))
    if rng.random() < 0.6:
        parts.append(rng.choice(pb.CLOSERS))
    text = " ".join(parts)
    return (text.lower() if rng.random() < 0.2 else text), distractor


def _luhn_card(rng: random.Random) -> str:
    """A 16-digit Visa/Mastercard-looking number with a valid Luhn check digit."""
    prefix = [4] if rng.random() < 0.6 else [5, rng.randint(1, 5)]
    digits = prefix + [rng.randrange(10) for _ in range(15 - len(prefix))]
    total = 0
    for i, d in enumerate(reversed(digits)):  # the check digit will sit to the right, so double even offsets
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return rng.choice(
        (s, " ".join(s[i : i + 4] for i in range(0, 16, 4)), "-".join(s[i : i + 4] for i in (0, 4, 8, 12)))
    )


def _pii_values(rng: random.Random) -> dict[str, str]:
    first, last = rng.choice(pb.FIRST_NAMES), rng.choice(pb.LAST_NAMES)
    line = rng.randint(100, 199)  # 555-01xx numbers are reserved for fiction
    phone = rng.choice(
        (
            f"(408) 555-01{line - 100:02d}",
            f"408-555-01{line - 100:02d}",
            f"+1 650 555 01{line - 100:02d}",
            f"512.555.01{line - 100:02d}",
            f"+44 20 7946 0{rng.randint(100, 999)}",
        )
    )
    email = rng.choice(
        (
            f"{first.lower()}.{last.lower()}@gmail.com",
            f"{first[0].lower()}{last.lower()}{rng.randint(1, 99)}@yahoo.com",
            f"{first.lower()}.{last.lower()}@corp.example.com",
        )
    )
    return {
        "email": email,
        "phone": phone,
        "card": _luhn_card(rng),
        "emp": f"EMP-{rng.randint(100000, 999999)}",
        "ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "name": f"{rng.choice(pb.FIRST_NAMES)} {rng.choice(pb.LAST_NAMES)}",
    }


def _add_pii(text: str, expert: str, rng: random.Random, seen: set[str]) -> str:
    """Paste a sentence with PII into the question; kinds not seen yet are preferred (the masking demo needs
    every kind at least once)."""
    weights = pb.PII_BY_EXPERT.get(expert, {"email": 1, "phone": 1, "person": 1})
    unseen = sorted(k for k in weights if k not in seen)
    if unseen and rng.random() < 0.5:
        kind = rng.choice(unseen)
    else:
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
    seen.add(kind)
    sentence = _fill(rng.choice(pb.PII_SENTENCES[kind]), rng, **_pii_values(rng))
    if rng.random() < 0.3:
        return f"{sentence[:1].upper() + sentence[1:]} {text}"
    return f"{text}{'.' if text[-1:].isalnum() else ''} {sentence}"


# --- questions ----------------------------------------------------------------------------------------------


class _Systematic:
    """Systematic sampling: each call fires with probability ``p``, yet the number of hits stays within one of
    the sum of the probabilities, so every seed tells the same story (no unlucky 3-sigma month of misroutes).
    """

    def __init__(self, rng: random.Random) -> None:
        self.level = rng.random()

    def __call__(self, p: float) -> bool:
        self.level += p
        if self.level >= 1.0:
            self.level -= 1.0
            return True
        return False


class _World:
    """The experts in play and the draws that depend on them."""

    def __init__(self, experts: dict[str, str], weeks: int, rng: random.Random) -> None:
        self.catalog = list(experts)
        self.active = [e for e in self.catalog if e in pb.INTENTS]
        if not self.active:
            raise ValueError(f"no expert in the catalog has a demo phrasebook; known: {sorted(pb.INTENTS)}")
        self.rng = rng
        self.weeks = weeks
        self.launch_week = min(LAUNCH_WEEK, weeks)
        self.confusers = [c for c in pb.CONFUSERS if c["truth"] in self.active]
        self.pii_seen: set[str] = set()
        # One stream per kind of outcome, so that each total is controlled separately.
        self.misroute = _Systematic(rng)
        self.confuser_draw = _Systematic(rng)
        self.unsat_misrouted = _Systematic(rng)
        self.unsat_correct = _Systematic(rng)
        self.unsat_oos = _Systematic(rng)

    def expert_mix(self, week: int, taste: list[float], launch_session: bool = False) -> list[float]:
        """A user's expert weights in a given week: company-wide shares and personal taste, or the launch."""
        if launch_session and any(e in self.active for e in LAUNCH_SESSION_MIX):
            return [LAUNCH_SESSION_MIX.get(e, 0.0) for e in self.active]
        base = [BASE_SHARE.get(e, 0.1) for e in self.active]
        mix = [0.65 * b / sum(base) + 0.35 * t / sum(taste) for b, t in zip(base, taste, strict=True)]
        if self._phase(week) == "after":  # some of the launch interest stays
            mix = [m * (1.2 if e == "product_docs" else 1.0) for m, e in zip(mix, self.active, strict=True)]
        return mix

    def _phase(self, week: int) -> str | None:
        if week == self.launch_week:
            return "launch"
        return "after" if week > self.launch_week else None

    def _misroute_target(self, expert: str) -> str:
        near = [e for e in pb.NEIGHBORS.get(expert, []) if e in self.catalog]
        return self.rng.choice(near or [e for e in self.catalog if e != expert] or [expert])

    def question(self, expert: str, week: int) -> _Question:
        rng = self.rng
        phase = self._phase(week)
        launch_share = LAUNCH_INTENT_SHARE.get(phase or "", {}).get(expert, 0.0)
        slots: dict[str, str] = {}
        if launch_share and rng.random() < launch_share:
            topic, templates = rng.choice(sorted(pb.LAUNCH_INTENTS[expert].items()))
            text = _decorate(_fill(rng.choice(templates), rng, slots), rng)
            other = "it_help" if expert == "product_docs" else "product_docs"
            q = _Question(text, expert, topic, "launch", alts=(other,), launch=phase)
        else:
            own = [c for c in self.confusers if c["truth"] == expert]
            if own and self.confuser_draw(CONFUSER_SHARE):
                c = rng.choice(own)
                core = _fill(rng.choice(c["templates"]), rng, slots)
                # Some confusers come wrapped in chatter, never with a distractor: the confusion is enough.
                text = _long(core, expert, [], rng)[0] if rng.random() < 0.2 else _decorate(core, rng)
                alts = tuple(a for a in c["alts"] if a in self.catalog)
                style = "confuser" if alts else "plain"  # no rival expert in this catalog: nothing to confuse
                q = _Question(text, expert, c["topic"], style, confuser=bool(alts), alts=alts)
            else:
                q = self._plain(expert, slots)
        q.slots = slots
        if rng.random() < TYPO_RATE:
            typoed = _typo(q.text, rng)
            q.typo = typoed != q.text
            q.text = typoed
        if rng.random() < PII_RATE:
            q.text, q.pii = _add_pii(q.text, expert, rng, self.pii_seen), True
        return q

    def _plain(self, expert: str, slots: dict[str, str]) -> _Question:
        rng = self.rng
        style = rng.choices(list(STYLE_WEIGHTS), weights=list(STYLE_WEIGHTS.values()))[0]
        if style == "short":
            short, topic = rng.choice(sorted(pb.SHORT[expert].items()))
            text = _fill(short, rng, slots)
            return _Question(text if rng.random() < 0.7 else text.upper(), expert, topic, "short")
        topic, templates = rng.choice(sorted(pb.INTENTS[expert].items()))
        core = _fill(rng.choice(templates), rng, slots)
        if style == "plain":
            return _Question(_decorate(core, rng), expert, topic, "plain")
        text, distractor = _long(core, expert, self.active, rng)
        if distractor is None:
            return _Question(text, expert, topic, "long")
        return _Question(text, expert, topic, "long_distractor", alts=(distractor,))

    def out_of_scope(self) -> _Question:
        rng = self.rng
        group = rng.choice(pb.OUT_OF_SCOPE)
        text = _fill(rng.choice(group["texts"]), rng)
        if rng.random() < 0.3:
            text = text.lower()
        return _Question(text, None, group["kind"], f"oos:{group['kind']}")

    def route(self, q: _Question) -> str:
        """What the production router answered."""
        rng = self.rng
        if q.true_expert is None:
            routes = [e for e in pb.OOS_ROUTES[q.style.split(":", 1)[1]] if e in self.catalog]
            return rng.choice(routes or self.catalog)
        p = MISROUTE.get(q.style, MISROUTE["plain"]) + (MISROUTE_TYPO_BONUS if q.typo else 0.0)
        if not self.misroute(p):
            return q.true_expert
        alts = [a for a in q.alts if a in self.catalog and a != q.true_expert]
        return rng.choice(alts) if alts else self._misroute_target(q.true_expert)

    def outcome(self, q: _Question, routed: str) -> tuple[bool, str]:
        """(satisfied, cause): the user's verdict and the true reason when unhappy."""
        rng = self.rng
        if q.true_expert is None:
            p = UNSAT_OOS.get(q.style.split(":", 1)[1], UNSAT_OOS_DEFAULT)
            return (False, "out_of_scope") if self.unsat_oos(p) else (True, "none")
        if routed != q.true_expert:
            return (False, "routing") if self.unsat_misrouted(UNSAT_MISROUTED) else (True, "none")
        if q.launch:
            p_unsat, p_retrieval = LAUNCH_UNSAT[q.launch]
        else:
            style = "long" if q.style.startswith("long") else q.style
            p_unsat = UNSAT_CORRECT.get(q.true_expert, 0.33) + UNSAT_STYLE_BONUS.get(style, 0.0)
            p_retrieval = RETRIEVAL_SHARE.get(q.true_expert, 0.5)
        if not self.unsat_correct(p_unsat):
            return True, "none"
        return False, ("retrieval" if rng.random() < p_retrieval else "generation")


# --- feedback and answers -----------------------------------------------------------------------------------


def _team(expert: str) -> str:
    return pb.TEAM_NAMES.get(expert, expert.replace("_", " "))


def _feedback(q: _Question, routed: str, satisfied: bool, cause: str, rng: random.Random) -> dict[str, Any]:
    fb: dict[str, Any] = {"thumbs": None, "rating": None, "comment": None}
    if rng.random() < THUMBS_SHARE:
        fb["thumbs"] = "up" if satisfied else "down"
    else:
        fb["rating"] = rng.choice((4, 5, 5)) if satisfied else rng.choice((1, 1, 2, 2, 3))
    if rng.random() < COMMENT_RATE["satisfied" if satisfied else "unsatisfied"]:
        key = "satisfied" if satisfied else cause
        if cause == "retrieval" and q.launch and rng.random() < 0.6:
            key = "launch_retrieval"
        comment = _fill(
            rng.choice(pb.COMMENTS[key]),
            rng,
            routed_team=_team(routed),
            true_team=_team(q.true_expert or routed),
            topic=q.topic,
        )
        fb["comment"] = comment.lower() if rng.random() < 0.4 else comment
    return fb


def _answer(q: _Question, routed: str, satisfied: bool, cause: str, rng: random.Random) -> str:
    """What the expert agent answered, excerpted to ~200 characters."""
    topic = q.topic
    product = pb.LAUNCH_PRODUCT if q.launch else q.slots.get("product") or rng.choice(pb.SLOTS["product"])
    fixed = {**q.slots, "topic": topic, "team": _team(routed), "product": product}
    if q.true_expert is None:
        pool = pb.OOS_GOOD_ANSWERS if satisfied else pb.OOS_ANSWERS
        text = _fill(rng.choice(pool), rng, **fixed)
    elif routed != q.true_expert:
        if rng.random() < 0.5 and routed in pb.OFF_TOPIC_ANSWERS:
            text = pb.OFF_TOPIC_ANSWERS[routed]
        else:  # the wrong expert confidently answers a question from its own domain
            other = rng.choice(sorted(pb.INTENTS.get(routed, {topic: []})))
            pool = pb.GOOD_ANSWERS.get(routed, pb.RETRIEVAL_ANSWERS)
            text = _fill(rng.choice(pool), rng, **{**fixed, "topic": other})
    elif cause == "retrieval" and q.launch:  # the new docs are not indexed yet
        text = _fill(rng.choice(pb.LAUNCH_RETRIEVAL_ANSWERS), rng, **fixed)
    elif cause == "retrieval":
        other = rng.choice(sorted(pb.INTENTS[q.true_expert]))
        text = _fill(rng.choice(pb.RETRIEVAL_ANSWERS), rng, **fixed, other_topic=other)
    elif cause == "generation":
        pool = pb.GENERATION_ANSWERS["any"] + pb.GENERATION_ANSWERS.get(q.true_expert, [])
        text = _fill(rng.choice(pool), rng, **fixed)
    else:
        text = _fill(rng.choice(pb.GOOD_ANSWERS[q.true_expert]), rng, **fixed)
    text = text[:1].upper() + text[1:]
    if len(text) > 200:
        text = text[:197].rsplit(" ", 1)[0] + "..."
    return text


def _record(
    ix: str, ev: _Event, session_id: str, routed: str, answer: str, fb: dict, system: str, rng: random.Random
) -> dict[str, Any]:
    """The log line as production writes it."""
    query = ev.question.text
    # ~4 characters per token, plus the chat template's few special tokens.
    prompt_tokens = 11 + round(len(system) / 4.0) + max(1, round(len(query) / 3.7))
    completion_tokens = max(1, math.ceil(len(routed) / 4)) + 1
    ttft = 180 + 0.45 * prompt_tokens + rng.lognormvariate(math.log(110), 0.5)
    latency = ttft + 30 * completion_tokens + rng.lognormvariate(math.log(620), 0.45)
    if rng.random() < 0.02:  # the occasional slow request (queueing, retries)
        latency *= rng.uniform(2.0, 4.0)
    created = int(ev.ts.timestamp())
    return {
        "id": ix,
        "timestamp": ev.ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "session_id": session_id,
        "user_id": ev.user,
        "request": {
            "model": PRODUCTION_MODEL,
            "temperature": 0,
            "max_tokens": 16,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": query}],
        },
        "response": {
            "id": f"chatcmpl-{rng.getrandbits(96):024x}",
            "object": "chat.completion",
            "created": created,
            "model": PRODUCTION_MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": routed}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
        "routed_expert": routed,
        "model": PRODUCTION_MODEL,
        "latency_ms": round(latency, 1),
        "ttft_ms": round(ttft, 1),
        "tokens_in": prompt_tokens,
        "tokens_out": completion_tokens,
        "answer_excerpt": answer,
        "feedback": fb,
    }


# --- broken lines -------------------------------------------------------------------------------------------


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def _malformed(rec: dict[str, Any], kind: str) -> str:
    """A corrupted version of a record, the way loggers and pipelines break them."""
    rec = json.loads(_dumps(rec))  # deep copy
    if kind == "invalid_json":
        return _dumps(rec).replace('"id": ', '"id" ', 1)
    if kind == "truncated":
        text = _dumps(rec)
        return text[: len(text) // 2]
    if kind == "missing_field":
        del rec["routed_expert"]
    elif kind == "wrong_type":
        rec["latency_ms"] = "fast"
    elif kind == "empty_messages":
        rec["request"]["messages"] = []
    elif kind == "bad_timestamp":
        rec["timestamp"] = "yesterday 3pm"
    elif kind == "negative_tokens":
        rec["tokens_in"] = -rec["tokens_in"]
    elif kind == "bad_rating":
        rec["feedback"] = {"thumbs": None, "rating": 11, "comment": None}
    elif kind == "not_an_object":
        return _dumps([rec["id"], rec["timestamp"], rec["routed_expert"]])
    return _dumps(rec)


MALFORMED_KINDS = (
    "invalid_json",
    "truncated",
    "missing_field",
    "wrong_type",
    "empty_messages",
    "bad_timestamp",
    "negative_tokens",
    "bad_rating",
    "not_an_object",
)


# --- time ---------------------------------------------------------------------------------------------------


def _session_start(rng: random.Random, start: date, week: int) -> datetime:
    """A working-day moment in the given week (week 1 is the 7 days from ``start``)."""
    days = [start + timedelta(days=7 * (week - 1) + k) for k in range(7)]
    days = [d for d in days if d.weekday() < 5]
    d = rng.choices(days, weights=[DAY_WEIGHTS[d.weekday()] for d in days])[0]
    # Morning and afternoon peaks, inside working hours.
    hour = rng.gauss(10.0, 1.2) if rng.random() < 0.5 else rng.gauss(14.5, 1.5)
    hour = min(max(hour, 8.0), 17.9)
    return datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(seconds=round(hour * 3600))


# --- files --------------------------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def generate_demo(
    out_dir: Path | str,
    experts: dict[str, str],
    n_interactions: int = 1200,
    weeks: int = 6,
    start: str = "2026-09-07",
    seed: int = 7,
) -> dict:
    """Write logs.jsonl, hidden_truth.jsonl and demo_meta.json into out_dir; return the meta dict."""
    if n_interactions < 1 or weeks < 1:
        raise ValueError("n_interactions and weeks must be positive")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    world = _World(dict(experts), weeks, rng)
    start_day = date.fromisoformat(start)
    system = router_system_prompt(dict(experts))

    # Malformed lines are extra records (their ids leave gaps); tiny runs get fewer of them.
    n_malformed = min(rng.randint(*N_MALFORMED), n_interactions // 20)
    n_total = n_interactions + n_malformed

    # Recurring users with uneven activity and their own mix of experts.
    users = [f"u-{i:04d}" for i in range(1, N_USERS + 1)]
    activity = [rng.lognormvariate(0, 0.8) for _ in users]
    taste = [[rng.gammavariate(1.0, 1.0) for _ in world.active] for _ in users]

    week_volume = [
        rng.uniform(0.92, 1.08) * (LAUNCH_WEEK_VOLUME if w == world.launch_week else 1.0)
        for w in range(1, weeks + 1)
    ]
    week_sessions = [0] * weeks
    chit_chat, launch_extra = _Systematic(rng), _Systematic(rng)
    events: list[_Event] = []
    session_key = 0
    while len(events) < n_total:
        session_key += 1
        # Sessions go to the week furthest behind its share, so weekly volumes follow week_volume closely.
        deficit = [
            v / sum(week_volume) * session_key - c for v, c in zip(week_volume, week_sessions, strict=True)
        ]
        week = 1 + max(range(weeks), key=lambda w: (deficit[w], -w))
        week_sessions[week - 1] += 1
        u = rng.choices(range(len(users)), weights=activity)[0]
        launch_session = week == world.launch_week and launch_extra(LAUNCH_SESSION_SHARE)
        mix = world.expert_mix(week, taste[u], launch_session)
        ts = _session_start(rng, start_day, week)
        expert = None
        for _ in range(rng.choices(SESSION_LENGTHS, weights=SESSION_LENGTH_WEIGHTS)[0]):
            if chit_chat(OUT_OF_SCOPE_SHARE):
                q = world.out_of_scope()
            else:
                if expert is None or rng.random() >= SAME_EXPERT_FOLLOW_UP:
                    expert = rng.choices(world.active, weights=mix)[0]
                q = world.question(expert, week)
            events.append(_Event(ts, week, users[u], session_key, q))
            ts += timedelta(seconds=round(20 + rng.lognormvariate(math.log(90), 0.8)))
            if len(events) == n_total:
                break
    events.sort(key=lambda e: (e.ts, e.session_key))

    malformed_at = set(rng.sample(range(min(10, n_interactions), n_total), n_malformed))
    kinds = rng.sample(MALFORMED_KINDS, k=min(n_malformed, len(MALFORMED_KINDS)))
    kinds += [rng.choice(MALFORMED_KINDS) for _ in range(n_malformed - len(kinds))]

    session_ids: dict[int, str] = {}
    lines: list[tuple[int, int, str]] = []  # (position, tie-break, text)
    truth: list[dict[str, Any]] = []
    good: list[tuple[_Event, str, dict]] = []
    for i, ev in enumerate(events):
        ix = f"ix-{i + 1:06d}"
        sid = session_ids.setdefault(ev.session_key, f"s-{len(session_ids) + 1:05d}")
        q = ev.question
        routed = world.route(q)
        satisfied, cause = world.outcome(q, routed)
        fb = _feedback(q, routed, satisfied, cause, rng)
        rec = _record(ix, ev, sid, routed, _answer(q, routed, satisfied, cause, rng), fb, system, rng)
        if i in malformed_at:
            lines.append((i, 0, _malformed(rec, kinds.pop())))
            continue
        lines.append((i, 0, _dumps(rec)))
        truth.append(
            {
                "id": ix,
                "true_expert": q.true_expert,
                "cause": cause,
                "satisfied": satisfied,
                "confuser": q.confuser,
            }
        )
        good.append((ev, routed, truth[-1]))

    # A retrying logger writes some records twice, shortly after the first copy. lines[pos] is event pos.
    window = min(40, max(1, n_total // 10))
    good_positions = [pos for pos, _, _ in lines if pos not in malformed_at and pos < n_total - window]
    n_duplicates = min(rng.randint(*N_DUPLICATES), len(good_positions), n_interactions // 10)
    for k, pos in enumerate(sorted(rng.sample(good_positions, n_duplicates))):
        lines.append((pos + rng.randint(1, window), 1 + k, lines[pos][2]))
    lines.sort(key=lambda x: (x[0], x[1]))

    logs_bytes = "".join(text + "\n" for _, _, text in lines).encode("utf-8")
    truth_bytes = "".join(_dumps(t) + "\n" for t in truth).encode("utf-8")
    meta = _meta(
        world, good, seed, n_interactions, weeks, start, n_malformed, n_duplicates, len(lines), experts
    )
    meta["files"] = {
        "logs.jsonl": hashlib.sha256(logs_bytes).hexdigest(),
        "hidden_truth.jsonl": hashlib.sha256(truth_bytes).hexdigest(),
    }
    _write_atomic(out / "logs.jsonl", logs_bytes)
    _write_atomic(out / "hidden_truth.jsonl", truth_bytes)
    _write_atomic(out / "demo_meta.json", (json.dumps(meta, sort_keys=True, indent=2) + "\n").encode("utf-8"))
    return meta


def _meta(
    world: _World,
    good: list[tuple[_Event, str, dict]],
    seed: int,
    n_interactions: int,
    weeks: int,
    start: str,
    n_malformed: int,
    n_duplicates: int,
    n_lines: int,
    experts: dict[str, str],
) -> dict[str, Any]:
    """Counts and proportions measured on the good interactions."""
    in_scope = [(ev, r, t) for ev, r, t in good if t["true_expert"] is not None]
    correct = sum(r == t["true_expert"] for _, r, t in in_scope)
    unsat = [t for _, _, t in good if not t["satisfied"]]
    causes = {c: sum(t["cause"] == c for _, _, t in good) for c in TRUTH_CAUSES}
    misrouted = [t for _, r, t in in_scope if r != t["true_expert"]]
    confusers = [(r, t) for _, r, t in in_scope if t["confuser"]]
    per_week = []
    for w in range(1, weeks + 1):
        rows = [t for ev, _, t in good if ev.week == w]
        per_week.append(
            {
                "week": w,
                "interactions": len(rows),
                "per_expert": {e: sum(t["true_expert"] == e for t in rows) for e in experts},
                "product_docs": sum(t["true_expert"] == "product_docs" for t in rows),
                "product_docs_share": _share(
                    sum(t["true_expert"] == "product_docs" for t in rows), len(rows)
                ),
                "unsatisfied_share": _share(sum(not t["satisfied"] for t in rows), len(rows)),
            }
        )
    lw = world.launch_week
    others = [p for p in per_week if p["week"] != lw]
    return {
        "synthetic": True,
        "note": "SYNTHETIC demo data generated by flywheel.demo.generator (seeded). No real employees, "
        "questions or feedback. hidden_truth.jsonl is for the simulated expert panel and judge scoring only.",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "args": {"n_interactions": n_interactions, "weeks": weeks, "start": start, "seed": seed},
        "production_model": PRODUCTION_MODEL,
        "experts": list(experts),
        "experts_without_phrasebook": [e for e in experts if e not in pb.INTENTS],
        "counts": {
            "lines": n_lines,
            "good": len(good),
            "malformed": n_malformed,
            "duplicates": n_duplicates,
            "in_scope": len(in_scope),
            "out_of_scope": len(good) - len(in_scope),
            "unsatisfied": len(unsat),
            "misrouted": len(misrouted),
            "misrouted_unsatisfied": sum(not t["satisfied"] for t in misrouted),
            "confusers": len(confusers),
            "users": len({ev.user for ev, _, _ in good}),
            "sessions": len({ev.session_key for ev, _, _ in good}),
            "pii_queries": sum(ev.question.pii for ev, _, _ in good),
            "typo_queries": sum(ev.question.typo for ev, _, _ in good),
        },
        "production_accuracy_in_scope": _share(correct, len(in_scope)),
        "confuser_accuracy": _share(sum(r == t["true_expert"] for r, t in confusers), len(confusers)),
        "out_of_scope_share": _share(len(good) - len(in_scope), len(good)),
        "unsatisfied_share": _share(len(unsat), len(good)),
        "causes": causes,
        "cause_share_of_unsatisfied": {c: _share(causes[c], len(unsat)) for c in causes if c != "none"},
        "per_expert": {e: sum(t["true_expert"] == e for _, _, t in good) for e in experts},
        "per_week": per_week,
        "launch": {
            "week": lw,
            "product": pb.LAUNCH_PRODUCT,
            "product_docs_share_launch_week": per_week[lw - 1]["product_docs_share"],
            "product_docs_share_other_weeks": _share(
                sum(p["product_docs"] for p in others), sum(p["interactions"] for p in others)
            ),
        },
    }
