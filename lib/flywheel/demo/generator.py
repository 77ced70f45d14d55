"""Seeded generator of the demo world: production router logs, user feedback and the hidden truth.

The story: an employee-support assistant whose router (a 70B LLM) sends each question to one expert agent.
The generator writes three files:

- ``logs.jsonl``: what production logged (OpenAI request/response, routing decision, latency, tokens,
  feedback), in timestamp order, with a few malformed and duplicate lines mixed in like a real log.
- ``hidden_truth.jsonl``: per good interaction, the true expert, the true cause of an unsatisfactory
  outcome, whether the user said so (null: never rated) and the phrasebook template the question came from.
  Only the simulated expert panel, judge scoring and the demo's unseen-template slice may read it; it is
  never a training label.
- ``demo_meta.json``: seed, arguments, counts and measured proportions.

Same arguments give byte-identical files: all randomness comes from one ``random.Random(seed)`` and JSON is
dumped with sorted keys.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from stdnum import luhn

from flywheel.core.files import atomic_write_bytes, atomic_write_json
from flywheel.demo.world import behaviour, phrasebook

__all__ = [
    "GENERATOR_VERSION",
    "PRODUCTION_MODEL",
    "DemoSimulation",
    "generate_demo",
    "outcome_odds",
    "router_system_prompt",
    "simulate_demo",
    "token_counts",
    "write_demo",
]

PRODUCTION_MODEL = "llama-3.1-70b-instruct"
GENERATOR_VERSION = "2"  # part of the demo world's cache key: bump it when the output changes

TRUTH_CAUSES = ("none", "routing", "retrieval", "generation", "out_of_scope")


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
    template: str = ""  # the phrasebook template before slots and paraphrase, e.g. "it_help/vpn_connection/3"


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
        pb = phrasebook()
        if key in pb.slots:
            value = self.rng.choice(pb.slots[key])
        elif key in pb.numeric_slots:
            numeric = pb.numeric_slots[key]
            value = numeric.prefix + "".join(str(self.rng.randrange(10)) for _ in range(numeric.digits))
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


def _slug(name: str) -> str:
    """A template id part: "VPN connection" -> "vpn_connection"."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _pick(rng: random.Random, templates: list[str], *prefix: str) -> tuple[str, str]:
    """One template and its stable id (prefix parts, then the template's 1-based position in its list)."""
    i = rng.randrange(len(templates))
    return templates[i], "/".join((*prefix, str(i + 1)))


@functools.cache
def _synonym_pattern() -> tuple[re.Pattern[str], dict[str, list[str]]]:
    """One regex over every synonym (longest first, whole words) and each one's alternatives."""
    groups = phrasebook().paraphrase.synonyms
    alternatives = {w.lower(): [o for o in group if o != w] for group in groups for w in group}
    words = sorted(alternatives, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE), alternatives


_QUESTION_WORDS = ("how", "what", "when", "where", "who", "why", "which", "can", "is", "are", "do", "does")


def _paraphrase(core: str, rng: random.Random) -> str:
    """Re-say a filled template the way different people would: another question frame, synonyms, the two
    clauses swapped, politeness and filler. The template id stays that of the template."""
    pb, rates = phrasebook().paraphrase, behaviour().query.paraphrase
    text = core
    if rng.random() < rates.frame:
        lower = text.lower()
        for frame in pb.frames:
            prefix = next((m for m in frame.match if lower.startswith(m.lower() + " ")), None)
            if prefix is not None:
                text = rng.choice(frame.forms).format(x=text[len(prefix) + 1 :])
                break
    pattern, alternatives = _synonym_pattern()

    def swap(m: re.Match[str]) -> str:
        return rng.choice(alternatives[m.group(0).lower()]) if rng.random() < rates.synonym else m.group(0)

    text = pattern.sub(swap, text)
    clauses = text.split(", ")
    if len(clauses) == 2 and min(len(c.split()) for c in clauses) >= 2 and rng.random() < rates.reorder:
        first, second = clauses
        joiner = "? " if second.split()[0].lower() in _QUESTION_WORDS else rng.choice((", ", " - ", ". "))
        text = f"{second}{joiner}{first[:1].lower() + first[1:]}"
    if rng.random() < rates.tail:
        text += rng.choice(pb.tails)
    if rng.random() < rates.politeness:
        text = rng.choice(pb.politeness) + text[:1].lower() + text[1:]
    elif rng.random() < rates.filler:
        text = rng.choice(pb.fillers) + text[:1].lower() + text[1:]
    return text


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
    pb = phrasebook()
    text = _style_case(core, rng)
    if rng.random() < opener:
        text = rng.choice(pb.openers) + text
    if rng.random() < closer:
        text = f"{text} {rng.choice(pb.closers)}"
    return text


def _long(core: str, expert: str, experts: list[str], rng: random.Random) -> tuple[str, str | None]:
    """A rambling multi-sentence question; often opens with context from another expert's domain."""
    pb = phrasebook()
    parts: list[str] = []
    if rng.random() < 0.5:
        parts.append(rng.choice(pb.openers).strip())
    context = rng.sample(pb.generic_context, 2)
    if rng.random() < 0.6:
        parts.append(_fill(context[0], rng))
    distractor = None
    others = [e for e in experts if e != expert and e in pb.distractors]
    if others and rng.random() < 0.65:
        distractor = rng.choice(others)
        lead = _fill(rng.choice(pb.distractors[distractor]), rng)
        parts.append(f"{lead} {core[:1].lower() + core[1:]}?")
    else:
        parts.append(core[:1].upper() + core[1:] + "?")
    if rng.random() < 0.3:
        parts.append(_fill(context[1], rng))
    if rng.random() < 0.6:
        parts.append(rng.choice(pb.closers))
    text = " ".join(parts)
    return (text.lower() if rng.random() < 0.2 else text), distractor


def _luhn_card(rng: random.Random) -> str:
    """A 16-digit Visa/Mastercard-looking number with a valid Luhn check digit."""
    prefix = [4] if rng.random() < 0.6 else [5, rng.randint(1, 5)]
    digits = prefix + [rng.randrange(10) for _ in range(15 - len(prefix))]
    number = "".join(map(str, digits))
    s = number + luhn.calc_check_digit(number)
    return rng.choice(
        (s, " ".join(s[i : i + 4] for i in range(0, 16, 4)), "-".join(s[i : i + 4] for i in (0, 4, 8, 12)))
    )


def _pii_values(rng: random.Random) -> dict[str, str]:
    pb = phrasebook()
    first, last = rng.choice(pb.first_names), rng.choice(pb.last_names)
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
        "name": f"{rng.choice(pb.first_names)} {rng.choice(pb.last_names)}",
    }


def _add_pii(text: str, expert: str, rng: random.Random, seen: set[str]) -> str:
    """Paste a sentence with PII into the question; kinds not seen yet are preferred (the masking demo needs
    every kind at least once)."""
    pb = phrasebook()
    weights = pb.pii_by_expert.get(expert, {"email": 1, "phone": 1, "person": 1})
    unseen = sorted(k for k in weights if k not in seen)
    if unseen and rng.random() < 0.5:
        kind = rng.choice(unseen)
    else:
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
    seen.add(kind)
    sentence = _fill(rng.choice(pb.pii_sentences[kind]), rng, **_pii_values(rng))
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
        pb, b = phrasebook(), behaviour()
        self.pb, self.behaviour = pb, b
        self.catalog = list(experts)
        self.active = [e for e in self.catalog if e in pb.intents]
        if not self.active:
            raise ValueError(f"no expert in the catalog has a demo phrasebook; known: {sorted(pb.intents)}")
        self.rng = rng
        self.weeks = weeks
        self.launch_week = min(b.launch.week, weeks)
        self.confusers = [c for c in pb.confusers if c.truth in self.active]
        self.pii_seen: set[str] = set()
        # One stream per kind of outcome, so that each total is controlled separately.
        self.misroute = _Systematic(rng)
        self.confuser_draw = _Systematic(rng)
        self.unsat_misrouted = _Systematic(rng)
        self.unsat_correct = _Systematic(rng)
        self.unsat_oos = _Systematic(rng)

    def expert_mix(self, week: int, taste: list[float], launch_session: bool = False) -> list[float]:
        """A user's expert weights in a given week: company-wide shares and personal taste, or the launch."""
        traffic, launch_mix = self.behaviour.traffic, self.behaviour.launch.session_mix
        if launch_session and any(e in self.active for e in launch_mix):
            return [launch_mix.get(e, 0.0) for e in self.active]
        base = [traffic.expert_share.get(e, traffic.unlisted_expert_share) for e in self.active]
        mix = [0.65 * b / sum(base) + 0.35 * t / sum(taste) for b, t in zip(base, taste, strict=True)]
        if self._phase(week) == "after":  # some of the launch interest stays
            mix = [m * (1.2 if e == "product_docs" else 1.0) for m, e in zip(mix, self.active, strict=True)]
        return mix

    def _phase(self, week: int) -> str | None:
        if week == self.launch_week:
            return "launch"
        return "after" if week > self.launch_week else None

    def _misroute_target(self, expert: str) -> str:
        near = [e for e in self.pb.neighbors.get(expert, []) if e in self.catalog]
        return self.rng.choice(near or [e for e in self.catalog if e != expert] or [expert])

    def question(self, expert: str, week: int) -> _Question:
        rng, query = self.rng, self.behaviour.query
        phase = self._phase(week)
        launch_share = self.behaviour.launch.intent_share.get(phase or "", {}).get(expert, 0.0)
        slots: dict[str, str] = {}
        if launch_share and rng.random() < launch_share:
            topic, templates = rng.choice(sorted(self.pb.launch_intents[expert].items()))
            template, template_id = _pick(rng, templates, "launch", _slug(topic))
            text = _decorate(_paraphrase(_fill(template, rng, slots), rng), rng)
            other = "it_help" if expert == "product_docs" else "product_docs"
            q = _Question(text, expert, topic, "launch", alts=(other,), launch=phase, template=template_id)
        else:
            own = [c for c in self.confusers if c.truth == expert]
            if own and self.confuser_draw(query.confuser_share):
                c = rng.choice(own)
                template, template_id = _pick(rng, c.templates, "confuser", _slug(c.topic))
                core = _paraphrase(_fill(template, rng, slots), rng)
                # Some confusers come wrapped in chatter, never with a distractor: the confusion is enough.
                text = _long(core, expert, [], rng)[0] if rng.random() < 0.2 else _decorate(core, rng)
                alts = tuple(a for a in c.alts if a in self.catalog)
                style = "confuser" if alts else "plain"  # no rival expert in this catalog: nothing to confuse
                q = _Question(text, expert, c.topic, style, bool(alts), alts, template=template_id)
            else:
                q = self._plain(expert, slots)
        q.slots = slots
        if rng.random() < query.typo_rate:
            typoed = _typo(q.text, rng)
            q.typo = typoed != q.text
            q.text = typoed
        if rng.random() < query.pii_rate:
            q.text, q.pii = _add_pii(q.text, expert, rng, self.pii_seen), True
        return q

    def _plain(self, expert: str, slots: dict[str, str]) -> _Question:
        rng, pb, style_weights = self.rng, self.pb, self.behaviour.query.style_weights
        style = rng.choices(list(style_weights), weights=list(style_weights.values()))[0]
        if style == "short":
            shorts = list(pb.short[expert].items())
            (short, topic), template_id = _pick(rng, shorts, expert, "short")  # type: ignore[arg-type]
            text = _fill(short, rng, slots)
            text = text if rng.random() < 0.7 else text.upper()
            return _Question(text, expert, topic, "short", template=template_id)
        topic, templates = rng.choice(sorted(pb.intents[expert].items()))
        template, template_id = _pick(rng, templates, expert, _slug(topic))
        core = _paraphrase(_fill(template, rng, slots), rng)
        if style == "plain":
            return _Question(_decorate(core, rng), expert, topic, "plain", template=template_id)
        text, distractor = _long(core, expert, self.active, rng)
        if distractor is None:
            return _Question(text, expert, topic, "long", template=template_id)
        return _Question(text, expert, topic, "long_distractor", alts=(distractor,), template=template_id)

    def out_of_scope(self) -> _Question:
        rng = self.rng
        group = rng.choice(self.pb.out_of_scope)
        template, template_id = _pick(rng, group.texts, "oos", _slug(group.kind))
        text = _fill(template, rng)
        if rng.random() < 0.3:
            text = text.lower()
        return _Question(text, None, group.kind, f"oos:{group.kind}", template=template_id)

    def route(self, q: _Question) -> str:
        """What the production router answered."""
        rng, misroute = self.rng, self.behaviour.misroute
        if q.true_expert is None:
            routes = [e for e in self.pb.oos_routes[q.style.split(":", 1)[1]] if e in self.catalog]
            return rng.choice(routes or self.catalog)
        p = misroute.by_style.get(q.style, misroute.by_style["plain"])
        if q.typo:
            p += misroute.typo_bonus
        if not self.misroute(p):
            return q.true_expert
        alts = [a for a in q.alts if a in self.catalog and a != q.true_expert]
        return rng.choice(alts) if alts else self._misroute_target(q.true_expert)

    def outcome(self, q: _Question, routed: str) -> tuple[bool, str]:
        """(satisfied, cause): the user's verdict and the true reason when unhappy."""
        cause, p_unsat, p_retrieval = outcome_odds(q, routed)
        if cause == "out_of_scope":
            return (False, cause) if self.unsat_oos(p_unsat) else (True, "none")
        if cause == "routing":
            return (False, cause) if self.unsat_misrouted(p_unsat) else (True, "none")
        if not self.unsat_correct(p_unsat):
            return True, "none"
        return False, ("retrieval" if self.rng.random() < p_retrieval else "generation")


def outcome_odds(q: _Question, routed: str) -> tuple[str | None, float, float]:
    """(cause, p_unsatisfied, p_retrieval) of the user's verdict on a routing decision: an unhappy user's
    cause is `cause`, or when None (the right expert answered) retrieval with p_retrieval, else generation."""
    b = behaviour()
    sat = b.satisfaction
    if q.true_expert is None:
        kind = q.style.split(":", 1)[1]
        return "out_of_scope", sat.out_of_scope_unsatisfied.get(kind, sat.other_out_of_scope_unsatisfied), 0.0
    if routed != q.true_expert:
        return "routing", sat.unsatisfied_when_misrouted, 0.0
    if q.launch:
        launch = b.launch.unsatisfied[q.launch]
        return None, launch.unsatisfied, launch.retrieval
    style = "long" if q.style.startswith("long") else q.style
    p_unsat = sat.unsatisfied_when_routed_right.get(q.true_expert, sat.unlisted_expert_unsatisfied)
    p_unsat += sat.style_bonus.get(style, 0.0)
    return None, p_unsat, sat.retrieval_share.get(q.true_expert, sat.unlisted_expert_retrieval_share)


# --- feedback and answers -----------------------------------------------------------------------------------


def _team(expert: str) -> str:
    return phrasebook().team_names.get(expert, expert.replace("_", " "))


def _feedback(q: _Question, routed: str, satisfied: bool, cause: str, rng: random.Random) -> dict[str, Any]:
    feedback = behaviour().feedback
    fb: dict[str, Any] = {"thumbs": None, "rating": None, "comment": None}
    if rng.random() < feedback.thumbs_share:
        fb["thumbs"] = "up" if satisfied else "down"
    else:
        fb["rating"] = rng.choice((4, 5, 5)) if satisfied else rng.choice((1, 1, 2, 2, 3))
    if rng.random() < feedback.comment_rate["satisfied" if satisfied else "unsatisfied"]:
        key = "satisfied" if satisfied else cause
        if cause == "retrieval" and q.launch and rng.random() < 0.6:
            key = "launch_retrieval"
        comment = _fill(
            rng.choice(phrasebook().comments[key]),
            rng,
            routed_team=_team(routed),
            true_team=_team(q.true_expert or routed),
            topic=q.topic,
        )
        fb["comment"] = comment.lower() if rng.random() < 0.4 else comment
    return fb


def _answer(q: _Question, routed: str, satisfied: bool, cause: str, rng: random.Random) -> str:
    """What the expert agent answered, excerpted to ~200 characters."""
    pb, topic = phrasebook(), q.topic
    product = pb.launch_product if q.launch else q.slots.get("product") or rng.choice(pb.slots["product"])
    fixed = {**q.slots, "topic": topic, "team": _team(routed), "product": product}
    if q.true_expert is None:
        pool = pb.oos_good_answers if satisfied else pb.oos_answers
        text = _fill(rng.choice(pool), rng, **fixed)
    elif routed != q.true_expert:
        if rng.random() < 0.5 and routed in pb.off_topic_answers:
            text = pb.off_topic_answers[routed]
        else:  # the wrong expert confidently answers a question from its own domain
            other = rng.choice(sorted(pb.intents.get(routed, {topic: []})))
            pool = pb.good_answers.get(routed, pb.retrieval_answers)
            text = _fill(rng.choice(pool), rng, **{**fixed, "topic": other})
    elif cause == "retrieval" and q.launch:  # the new docs are not indexed yet
        text = _fill(rng.choice(pb.launch_retrieval_answers), rng, **fixed)
    elif cause == "retrieval":
        other = rng.choice(sorted(pb.intents[q.true_expert]))
        text = _fill(rng.choice(pb.retrieval_answers), rng, **fixed, other_topic=other)
    elif cause == "generation":
        pool = pb.generation_answers["any"] + pb.generation_answers.get(q.true_expert, [])
        text = _fill(rng.choice(pool), rng, **fixed)
    else:
        text = _fill(rng.choice(pb.good_answers[q.true_expert]), rng, **fixed)
    text = text[:1].upper() + text[1:]
    if len(text) > 200:
        text = text[:197].rsplit(" ", 1)[0] + "..."
    return text


def token_counts(system: str, query: str, answer: str) -> tuple[int, int]:
    """(prompt, completion) tokens the production LLM reports for a routing request and its answer."""
    # ~4 characters per token, plus the chat template's few special tokens.
    prompt_tokens = 11 + round(len(system) / 4.0) + max(1, round(len(query) / 3.7))
    return prompt_tokens, max(1, math.ceil(len(answer) / 4)) + 1


def _record(
    ix: str,
    ev: _Event,
    session_id: str,
    routed: str,
    answer: str,
    fb: dict | None,
    system: str,
    rng: random.Random,
) -> dict[str, Any]:
    """The log line as production writes it."""
    query = ev.question.text
    prompt_tokens, completion_tokens = token_counts(system, query, routed)
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
    day_weights = behaviour().traffic.day_weights
    d = rng.choices(days, weights=[day_weights[d.weekday()] for d in days])[0]
    # Morning and afternoon peaks, inside working hours.
    hour = rng.gauss(10.0, 1.2) if rng.random() < 0.5 else rng.gauss(14.5, 1.5)
    hour = min(max(hour, 8.0), 17.9)
    return datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(seconds=round(hour * 3600))


# --- the world, written out ---------------------------------------------------------------------------------


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
    return write_demo(out_dir, simulate_demo(experts, n_interactions, weeks, start, seed))


def write_demo(out_dir: Path | str, simulation: DemoSimulation) -> dict:
    """Write a simulated world's three files into out_dir (each atomically); return its meta dict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "logs.jsonl", simulation.logs_bytes)
    atomic_write_bytes(out / "hidden_truth.jsonl", simulation.truth_bytes)
    atomic_write_json(out / "demo_meta.json", simulation.meta)
    return simulation.meta


@dataclass
class DemoSimulation:
    """The generated world in memory, before it is written (flywheel.demo.weekly releases it week by week).

    ``lines`` are the log lines in file order as (event position, 0 for the event's own line or k for the
    k-th duplicate copy, text); ``events[position]`` is the interaction a line belongs to or sits after."""

    world: _World
    events: list[_Event]
    lines: list[tuple[int, int, str]]
    malformed_at: set[int]
    truth: list[dict[str, Any]]
    meta: dict[str, Any]
    logs_bytes: bytes
    truth_bytes: bytes


def simulate_demo(
    experts: dict[str, str],
    n_interactions: int = 1200,
    weeks: int = 6,
    start: str = "2026-09-07",
    seed: int = 7,
) -> DemoSimulation:
    """The world `generate_demo` writes, with the events behind its lines (same arguments, same world)."""
    if n_interactions < 1 or weeks < 1:
        raise ValueError("n_interactions and weeks must be positive")
    rng = random.Random(seed)
    world = _World(dict(experts), weeks, rng)
    traffic, launch, hygiene = world.behaviour.traffic, world.behaviour.launch, world.behaviour.log_hygiene
    start_day = date.fromisoformat(start)
    system = router_system_prompt(dict(experts))

    # Malformed lines are extra records (their ids leave gaps); tiny runs get fewer of them.
    n_malformed = min(rng.randint(hygiene.malformed.low, hygiene.malformed.high), n_interactions // 20)
    n_total = n_interactions + n_malformed

    # Recurring users with uneven activity and their own mix of experts.
    users = [f"u-{i:04d}" for i in range(1, traffic.users + 1)]
    activity = [rng.lognormvariate(0, 0.8) for _ in users]
    taste = [[rng.gammavariate(1.0, 1.0) for _ in world.active] for _ in users]

    week_volume = [
        rng.uniform(0.92, 1.08) * (launch.volume if w == world.launch_week else 1.0)
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
        launch_session = week == world.launch_week and launch_extra(launch.session_share)
        mix = world.expert_mix(week, taste[u], launch_session)
        ts = _session_start(rng, start_day, week)
        expert = None
        lengths = traffic.session_length_weights
        for _ in range(rng.choices(list(lengths), weights=list(lengths.values()))[0]):
            if chit_chat(traffic.out_of_scope_share):
                q = world.out_of_scope()
            else:
                if expert is None or rng.random() >= traffic.same_expert_follow_up:
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
        # Some users never rate: the log has no feedback, the truth keeps what went wrong (if anything).
        rated = rng.random() >= world.behaviour.feedback.no_feedback_share
        fb = _feedback(q, routed, satisfied, cause, rng) if rated else None
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
                "satisfied": satisfied if rated else None,
                "confuser": q.confuser,
                "template": q.template,
            }
        )
        good.append((ev, routed, truth[-1]))

    # A retrying logger writes some records twice, shortly after the first copy. lines[pos] is event pos.
    window = min(40, max(1, n_total // 10))
    good_positions = [pos for pos, _, _ in lines if pos not in malformed_at and pos < n_total - window]
    dups = hygiene.duplicates
    n_duplicates = min(rng.randint(dups.low, dups.high), len(good_positions), n_interactions // 10)
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
    return DemoSimulation(world, events, lines, malformed_at, truth, meta, logs_bytes, truth_bytes)


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
    rated = [t for _, _, t in good if t["satisfied"] is not None]
    unsat = [t for t in rated if not t["satisfied"]]
    causes = {c: sum(t["cause"] == c for _, _, t in good) for c in TRUTH_CAUSES}  # rated or not
    unsat_causes = {c: sum(t["cause"] == c for t in unsat) for c in TRUTH_CAUSES if c != "none"}
    misrouted = [t for _, r, t in in_scope if r != t["true_expert"]]
    confusers = [(r, t) for _, r, t in in_scope if t["confuser"]]
    per_week = []
    for w in range(1, weeks + 1):
        rows = [t for ev, _, t in good if ev.week == w]
        rated_rows = [t for t in rows if t["satisfied"] is not None]
        per_week.append(
            {
                "week": w,
                "interactions": len(rows),
                "per_expert": {e: sum(t["true_expert"] == e for t in rows) for e in experts},
                "product_docs": sum(t["true_expert"] == "product_docs" for t in rows),
                "product_docs_share": _share(
                    sum(t["true_expert"] == "product_docs" for t in rows), len(rows)
                ),
                "unsatisfied_share": _share(sum(not t["satisfied"] for t in rated_rows), len(rated_rows)),
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
        "experts_without_phrasebook": [e for e in experts if e not in world.pb.intents],
        "counts": {
            "lines": n_lines,
            "good": len(good),
            "malformed": n_malformed,
            "duplicates": n_duplicates,
            "in_scope": len(in_scope),
            "out_of_scope": len(good) - len(in_scope),
            "rated": len(rated),
            "no_feedback": len(good) - len(rated),
            "unsatisfied": len(unsat),
            "misrouted": len(misrouted),
            "misrouted_unsatisfied": sum(t["satisfied"] is False for t in misrouted),
            "confusers": len(confusers),
            "users": len({ev.user for ev, _, _ in good}),
            "sessions": len({ev.session_key for ev, _, _ in good}),
            "pii_queries": sum(ev.question.pii for ev, _, _ in good),
            "typo_queries": sum(ev.question.typo for ev, _, _ in good),
            "templates": len({t["template"] for _, _, t in good}),
        },
        "production_accuracy_in_scope": _share(correct, len(in_scope)),
        "confuser_accuracy": _share(sum(r == t["true_expert"] for r, t in confusers), len(confusers)),
        "out_of_scope_share": _share(len(good) - len(in_scope), len(good)),
        "no_feedback_share": _share(len(good) - len(rated), len(good)),
        "unsatisfied_share": _share(len(unsat), len(rated)),  # of the rated interactions
        "causes": causes,
        "cause_share_of_unsatisfied": {c: _share(n, len(unsat)) for c, n in unsat_causes.items()},
        "per_expert": {e: sum(t["true_expert"] == e for _, _, t in good) for e in experts},
        "per_week": per_week,
        "launch": {
            "week": lw,
            "product": world.pb.launch_product,
            "product_docs_share_launch_week": per_week[lw - 1]["product_docs_share"],
            "product_docs_share_other_weeks": _share(
                sum(p["product_docs"] for p in others), sum(p["interactions"] for p in others)
            ),
        },
    }
