"""The seeded demo data: determinism, the story's proportions, feedback, templates, log hygiene, PII, traffic
shift, difficulty."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from stdnum import luhn

from flywheel.collect.ingest import ingest
from flywheel.core.pii import PiiMasker
from flywheel.core.schema import Interaction
from flywheel.core.store import Store
from flywheel.demo.baseline import tfidf_baseline_accuracy
from flywheel.demo.generator import _fill, _paraphrase, generate_demo
from flywheel.demo.world import Phrasebook, behaviour, phrasebook

CONFIG = Path(__file__).parents[1] / "configs" / "demo.yaml"
FILES = ("logs.jsonl", "hidden_truth.jsonl", "demo_meta.json")
N_REFERENCE = 1800  # the reference demo's size: ~1,200 interactions with feedback
TEMPLATE_ID = re.compile(r"^(?:[a-z_]+/[a-z0-9_]+|confuser/[a-z0-9_]+|launch/[a-z0-9_]+|oos/[a-z0-9_]+)/\d+$")


@pytest.fixture(scope="module")
def experts() -> dict[str, str]:
    return yaml.safe_load(CONFIG.read_text())["experts"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, experts: dict[str, str]) -> dict:
    """The reference demo (seed 7, 1,800 interactions), parsed once for the module."""
    out = tmp_path_factory.mktemp("demo7")
    meta = generate_demo(out, experts, n_interactions=N_REFERENCE, seed=7)
    raw = (out / "logs.jsonl").read_text(encoding="utf-8").splitlines()
    good: dict[str, Interaction] = {}
    bad: list[str] = []
    for line in raw:
        try:
            ix = Interaction.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError):
            bad.append(line)
            continue
        good.setdefault(ix.id, ix)
    truth = {
        row["id"]: row
        for row in map(json.loads, (out / "hidden_truth.jsonl").read_text(encoding="utf-8").splitlines())
    }
    return {"out": out, "meta": meta, "raw": raw, "good": good, "bad": bad, "truth": truth}


# --- determinism ------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path, experts: dict[str, str]) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    meta = generate_demo(a, experts, n_interactions=300, seed=11)
    assert generate_demo(b, experts, n_interactions=300, seed=11) == meta
    generate_demo(c, experts, n_interactions=300, seed=12)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert meta["files"]["logs.jsonl"] == hashlib.sha256((a / "logs.jsonl").read_bytes()).hexdigest()
    assert (a / "logs.jsonl").read_bytes() != (c / "logs.jsonl").read_bytes()
    assert (a / "hidden_truth.jsonl").read_bytes() != (c / "hidden_truth.jsonl").read_bytes()
    assert not [p.name for p in a.iterdir() if p.name not in FILES]  # no temp files left behind


def test_full_size_generation_is_reproducible(demo: dict, experts: dict[str, str], tmp_path: Path) -> None:
    generate_demo(tmp_path, experts, n_interactions=N_REFERENCE, seed=7)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (demo["out"] / name).read_bytes(), name


# --- the story's proportions ------------------------------------------------------------------------------


def test_proportions_match_the_reference_case(demo: dict) -> None:
    good, truth = demo["good"], demo["truth"]
    assert len(good) == N_REFERENCE
    in_scope = [ix for ix in good.values() if truth[ix.id]["true_expert"] is not None]
    accuracy = sum(ix.routed_expert == truth[ix.id]["true_expert"] for ix in in_scope) / len(in_scope)
    assert 0.95 <= accuracy <= 0.97

    # Satisfaction measured from the logged feedback agrees with the truth file; unrated is null in both.
    for ix in good.values():
        assert (ix.feedback.satisfied if ix.feedback else None) == truth[ix.id]["satisfied"]
    rated = [t for t in truth.values() if t["satisfied"] is not None]
    assert 0.26 <= 1 - len(rated) / len(good) <= 0.34
    assert len(rated) >= 1150  # ~1,200 pieces of feedback
    unsatisfied = [t for t in rated if not t["satisfied"]]
    assert 0.36 <= len(unsatisfied) / len(rated) <= 0.44

    causes = Counter(t["cause"] for t in unsatisfied)
    assert 0.07 <= causes["routing"] / len(unsatisfied) <= 0.12
    assert 0.08 <= causes["out_of_scope"] / len(unsatisfied) <= 0.16
    assert causes["retrieval"] + causes["generation"] > 0.7 * len(unsatisfied)  # most are not routing
    assert 0.05 <= (len(good) - len(in_scope)) / len(good) <= 0.08

    meta = demo["meta"]
    assert meta["synthetic"] is True
    assert meta["production_accuracy_in_scope"] == pytest.approx(accuracy, abs=1e-4)
    assert meta["counts"]["unsatisfied"] == len(unsatisfied)
    assert meta["counts"]["no_feedback"] == len(good) - len(rated)
    assert 95 <= 100 * meta["production_accuracy_in_scope"] <= 97


def test_truth_is_consistent_with_the_logs(demo: dict) -> None:
    good, truth = demo["good"], demo["truth"]
    misrouted = 0
    for ix in good.values():
        t = truth[ix.id]
        wrong = t["true_expert"] is not None and ix.routed_expert != t["true_expert"]
        misrouted += wrong
        # The truth keeps what went wrong whether or not the user rated it.
        assert (t["cause"] == "none") == (t["satisfied"] is not False) or t["satisfied"] is None
        if t["cause"] != "none":
            assert (t["cause"] == "out_of_scope") == (t["true_expert"] is None)
            assert (t["cause"] == "routing") == wrong
    # Most misroutes are rated unsatisfactory, not all; misroutes concentrate on confusers.
    routing = sum(t["cause"] == "routing" for t in truth.values())
    assert 0.75 <= routing / misrouted < 1.0
    confuser_misroutes = sum(
        t["confuser"] and good[i].routed_expert != t["true_expert"] for i, t in truth.items()
    )
    assert confuser_misroutes > 0.4 * misrouted


# --- feedback that never came, and templates ----------------------------------------------------------------


def test_unrated_interactions_ingest_without_feedback(tmp_path: Path, experts: dict[str, str]) -> None:
    """About 30% of users never rate: their log lines carry `feedback: null` and the store keeps them as
    satisfied=None, beside the rated ones; the hidden truth still knows their true expert."""
    generate_demo(tmp_path, experts, n_interactions=300, seed=5)
    truth = {
        row["id"]: row for row in map(json.loads, (tmp_path / "hidden_truth.jsonl").read_text().splitlines())
    }
    unrated = {i for i, t in truth.items() if t["satisfied"] is None}
    assert 0.2 <= len(unrated) / len(truth) <= 0.4
    assert all(
        truth[i]["true_expert"] is not None or truth[i]["cause"] in ("none", "out_of_scope") for i in unrated
    )
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    ingest(store, [tmp_path / "logs.jsonl"], progress=False, masker=PiiMasker(names=False))
    frame = store.interactions_frame(["id", "satisfied", "thumbs", "rating"]).set_index("id")
    assert set(frame.index) == set(truth)
    assert set(frame.index[frame["satisfied"].isna()]) == unrated
    assert frame.loc[sorted(unrated), ["thumbs", "rating"]].isna().all().all()
    rated = frame.drop(index=sorted(unrated))
    assert all(bool(rated.at[i, "satisfied"]) == truth[i]["satisfied"] for i in rated.index)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _template_owner(template_id: str) -> tuple[str, str | None]:
    """(the phrasebook text a template id points at, the true expert it implies); fails if it is unknown."""
    pb = phrasebook()
    *head, n = template_id.split("/")
    i = int(n) - 1
    assert i >= 0, template_id
    if head[0] == "oos":
        (group,) = [g for g in pb.out_of_scope if _slug(g.kind) == head[1]]
        return group.texts[i], None
    if head[0] == "confuser":
        (c,) = [c for c in pb.confusers if _slug(c.topic) == head[1]]
        return c.templates[i], c.truth
    if head[0] == "launch":
        ((expert, templates),) = [
            (e, ts)
            for e, topics in pb.launch_intents.items()
            for name, ts in topics.items()
            if _slug(name) == head[1]
        ]
        return templates[i], expert
    expert, topic = head
    if topic == "short":
        return list(pb.short[expert])[i], expert
    (templates,) = [ts for name, ts in pb.intents[expert].items() if _slug(name) == topic]
    return templates[i], expert


def test_every_question_records_its_template(demo: dict) -> None:
    """The template id names the phrasebook entry a question came from (before slots, paraphrase, typos and
    decoration) and agrees with its true expert; out-of-scope and short questions repeat their text."""
    truth, good = demo["truth"], demo["good"]
    ids = Counter(t["template"] for t in truth.values())
    assert all(TEMPLATE_ID.match(i) for i in ids), [i for i in ids if not TEMPLATE_ID.match(i)][:5]
    for template_id in ids:
        _template_owner(template_id)  # resolves
    for ix in good.values():
        t = truth[ix.id]
        text, expert = _template_owner(t["template"])
        assert expert == t["true_expert"], (t["template"], t["true_expert"])
        if t["template"].startswith("oos/") and "{" not in text:
            assert ix.query.lower() == text.lower()
    # Many templates, most of them rare: a held-out question often has a template no training example used.
    assert len(ids) >= 700 and demo["meta"]["counts"]["templates"] == len(ids)
    in_scope = sorted(i for i, t in truth.items() if t["true_expert"] is not None)
    random.Random(0).shuffle(in_scope)
    test, train = in_scope[:400], in_scope[400:1600]
    seen = {truth[i]["template"] for i in train}
    assert 0.25 <= sum(truth[i]["template"] not in seen for i in test) / len(test) <= 0.6


def test_template_ids_are_stable_across_seeds(tmp_path: Path, experts: dict[str, str]) -> None:
    """Ids depend on the phrasebook, not on the draw: a template keeps its id in every world."""
    generate_demo(tmp_path / "a", experts, n_interactions=400, seed=21)
    generate_demo(tmp_path / "b", experts, n_interactions=400, seed=22)
    rows = [
        json.loads(line)
        for folder in ("a", "b")
        for line in (tmp_path / folder / "hidden_truth.jsonl").read_text().splitlines()
    ]
    assert all(_template_owner(r["template"])[1] == r["true_expert"] for r in rows)
    assert _template_owner("it_help/vpn_connection/1")[0] == "vpn keeps disconnecting every few minutes"
    assert _template_owner("oos/greeting/1")[0] == "hi"


def test_hidden_truth_never_reaches_the_logs(demo: dict) -> None:
    raw = "\n".join(demo["raw"])
    for key in ('"true_expert"', '"template"', '"cause"', '"confuser"', "hidden_truth"):
        assert key not in raw
    assert not [i for i in {t["template"] for t in demo["truth"].values()} if i in raw]
    unrated = {ix.id for ix in demo["good"].values() if ix.feedback is None}
    assert unrated
    for line in demo["raw"]:
        if line not in demo["bad"] and json.loads(line)["id"] in unrated:
            assert json.loads(line)["feedback"] is None


# --- log hygiene --------------------------------------------------------------------------------------------


def test_good_lines_validate_and_broken_lines_do_not(demo: dict, experts: dict[str, str]) -> None:
    raw, good, bad, truth = demo["raw"], demo["good"], demo["bad"], demo["truth"]
    assert 6 <= len(bad) <= 10
    assert set(good) == set(truth)  # every good id has a truth row and vice versa
    assert len(raw) == len(good) + len(bad) + sum(n - 1 for n in Counter(raw).values() if n > 1)
    duplicates = [line for line, n in Counter(raw).items() if n > 1]
    assert 8 <= len(duplicates) <= 12
    assert all(line not in bad for line in duplicates)
    for line in bad:  # broken lines still carry an id where they can, but never one in the truth file
        ids = re.findall(r"ix-\d{6}", line)
        assert not ids or ids[0] not in truth
    assert len({t["true_expert"] for t in truth.values()} - {None}) >= 6
    assert {ix.routed_expert for ix in good.values()} <= set(experts)


def test_records_look_like_production(demo: dict, experts: dict[str, str]) -> None:
    good = list(demo["good"].values())
    first_copies = []
    seen = set()
    for line in demo["raw"]:  # timestamp order, ignoring the duplicate copies
        if line not in demo["bad"] and line not in seen:
            seen.add(line)
            first_copies.append(json.loads(line)["timestamp"])
    assert first_copies == sorted(first_copies)
    for ix in good:
        system = ix.request["messages"][0]["content"]
        assert all(f"{name}: {desc}" in system for name, desc in experts.items())
        assert ix.response["choices"][0]["message"]["content"] == ix.routed_expert
        assert ix.tokens_in == ix.response["usage"]["prompt_tokens"]
        assert abs(ix.tokens_in - (len(system) + len(ix.query)) / 4) < 40
        assert 0 < ix.ttft_ms < ix.latency_ms
        assert ix.timestamp.weekday() < 5 and 8 <= ix.timestamp.hour <= 18  # a late session may run over
    latencies = sorted(ix.latency_ms for ix in good)
    assert 700 <= latencies[len(latencies) // 2] <= 2500
    assert len({ix.user_id for ix in good}) >= 100
    assert len({ix.session_id for ix in good}) < len(good) * 0.7  # sessions hold several questions
    comments = [ix.feedback.comment for ix in good if ix.feedback and ix.feedback.comment]
    assert len(set(comments)) >= 20
    ratings = sum(ix.feedback.rating is not None for ix in good if ix.feedback)
    assert 0.08 <= ratings / len(good) <= 0.22


def test_queries_are_varied_and_messy(demo: dict) -> None:
    queries = [ix.query for ix in demo["good"].values()]
    assert len(set(queries)) > 0.75 * len(queries)
    assert sum(len(q.split()) <= 2 for q in queries) > 50  # "vpn down", "401k?"
    assert sum(len(q) > 120 for q in queries) > 50  # rambling multi-sentence questions
    assert sum(q == q.lower() for q in queries) > 200


# --- PII and traffic shift ----------------------------------------------------------------------------------


def test_pii_present(demo: dict) -> None:
    text = "\n".join(ix.query for ix in demo["good"].values())
    assert re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text)
    assert re.search(r"\(\d{3}\) \d{3}-\d{4}|\b\d{3}[-.]\d{3}[-.]\d{4}\b|\+\d{1,2}(?: \d{2,4}){3}\b", text)
    assert re.search(r"\bEMP-\d{6}\b", text)
    assert re.search(r"\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", text)
    cards = [re.sub(r"\D", "", m) for m in re.findall(r"\b(?:\d{4}[ -]?){3}\d{4}\b", text)]
    assert cards and all(luhn.is_valid(c) for c in cards)
    assert 0.03 <= demo["meta"]["counts"]["pii_queries"] / len(demo["good"]) <= 0.08


def test_launch_week_shifts_traffic_and_satisfaction(demo: dict) -> None:
    start = date.fromisoformat(demo["meta"]["args"]["start"])
    launch = demo["meta"]["launch"]["week"]
    by_week: dict[int, list[dict]] = {}
    for ix in demo["good"].values():
        by_week.setdefault((ix.timestamp.date() - start).days // 7 + 1, []).append(demo["truth"][ix.id])

    def share(rows: list[dict], pred) -> float:
        return sum(map(pred, rows)) / len(rows)

    docs = {w: share(rows, lambda t: t["true_expert"] == "product_docs") for w, rows in by_week.items()}
    unsat = {w: share(rows, lambda t: not t["satisfied"]) for w, rows in by_week.items()}
    it_help = {w: sum(t["true_expert"] == "it_help" for t in rows) for w, rows in by_week.items()}
    others = [w for w in by_week if w != launch]
    assert docs[launch] > max(docs[w] for w in others) + 0.05
    assert it_help[launch] > 1.2 * sum(it_help[w] for w in others) / len(others)  # install trouble
    assert unsat[launch] > max(unsat[w] for w in others)  # the new docs are not indexed yet
    # New vocabulary arrives with the launch, and not before.
    new_words = re.compile(r"helios( sdk)? 3\.0\b|helios 3\b|hlx", re.IGNORECASE)
    weeks = [
        (ix.timestamp.date() - start).days // 7 + 1
        for ix in demo["good"].values()
        if new_words.search(ix.query)
    ]
    assert len(weeks) >= 25 and min(weeks) == launch


# --- difficulty ---------------------------------------------------------------------------------------------


def test_bag_of_words_router_is_clearly_worse_than_production(demo: dict) -> None:
    out = demo["out"]
    accuracy = tfidf_baseline_accuracy(out / "logs.jsonl", out / "hidden_truth.jsonl", seed=0)
    assert 0.65 <= accuracy <= 0.90
    assert accuracy <= demo["meta"]["production_accuracy_in_scope"] - 0.08


# --- the phrasebook -----------------------------------------------------------------------------------------


def test_every_template_fills() -> None:
    """A misspelt slot in any template fails here rather than in some seed's rare draw."""
    pb = phrasebook()
    rng = random.Random(0)
    fixed = {"topic": "t", "team": "IT", "other_topic": "o", "routed_team": "IT", "true_team": "HR"}
    pii = {"email": "a@b.c", "phone": "1", "card": "4", "emp": "EMP-1", "ip": "10.0.0.1", "name": "N"}
    templates = [t for intents in pb.intents.values() for ts in intents.values() for t in ts]
    templates += [t for intents in pb.launch_intents.values() for ts in intents.values() for t in ts]
    templates += [t for shorts in pb.short.values() for t in shorts]
    templates += [t for c in pb.confusers for t in c.templates]
    templates += [t for g in pb.out_of_scope for t in g.texts]
    templates += [t for ts in pb.distractors.values() for t in ts] + pb.generic_context
    templates += [t for ts in pb.good_answers.values() for t in ts] + pb.retrieval_answers
    templates += [t for ts in pb.generation_answers.values() for t in ts] + pb.launch_retrieval_answers
    templates += list(pb.off_topic_answers.values()) + pb.oos_answers + pb.oos_good_answers
    templates += [t for ts in pb.comments.values() for t in ts] + [
        t for ts in pb.pii_sentences.values() for t in ts
    ]
    for template in templates:
        assert "{" not in _fill(template, rng, **fixed, **pii), template
    for expert, shorts in pb.short.items():
        assert set(shorts.values()) <= set(pb.intents[expert]), expert
    assert all(len(intents) >= 20 for intents in pb.intents.values())
    # Several ways to ask each intent (not just slot swaps), and frames that keep the rest of the question.
    per_topic = [len(ts) for intents in pb.intents.values() for ts in intents.values()]
    assert sum(per_topic) >= 1000 and min(per_topic) >= 5
    assert all(form.count("{x}") == 1 for frame in pb.paraphrase.frames for form in frame.forms)
    assert all(len(group) >= 2 for group in pb.paraphrase.synonyms)


def test_paraphrase_operators_vary_a_template_and_keep_its_id() -> None:
    """One filled template, re-said many times: new frames and words, never an unfilled slot."""
    rng = random.Random(3)
    core = "how do I request access to Jira"
    said = {_paraphrase(core, rng) for _ in range(200)}
    assert len(said) >= 20 and all("{" not in s for s in said)
    assert any(s.startswith("what's the process to request access") for s in said)
    assert sum("access to Jira" in s for s in said) == len(said)  # the domain words survive


def test_world_data_files_load_and_agree() -> None:
    """phrasebook.yaml and behaviour.yaml validate, and every name one file uses exists in the other."""
    pb, b = phrasebook(), behaviour()
    experts = set(pb.intents)
    oos_kinds = [g.kind for g in pb.out_of_scope]
    assert set(b.traffic.expert_share) == experts
    assert set(b.launch.session_mix) | set(pb.launch_intents) <= experts
    assert {e for shares in b.launch.intent_share.values() for e in shares} <= set(pb.launch_intents)
    assert set(b.launch.intent_share) == set(b.launch.unsatisfied) == {"launch", "after"}
    assert set(b.satisfaction.unsatisfied_when_routed_right) == experts
    assert set(b.satisfaction.retrieval_share) <= experts
    assert set(b.satisfaction.out_of_scope_unsatisfied) <= set(oos_kinds)
    assert set(b.misroute.by_style) == {"plain", "short", "long", "long_distractor", "confuser", "launch"}
    assert len(b.traffic.day_weights) == 5  # Monday..Friday
    assert set(oos_kinds) == set(pb.oos_routes)
    assert all(c.truth in experts and set(c.alts) <= experts - {c.truth} for c in pb.confusers)
    assert all(set(weights) <= set(pb.pii_sentences) for weights in pb.pii_by_expert.values())
    assert set(pb.good_answers) == experts and set(pb.neighbors) == experts
    assert b.log_hygiene.malformed.low <= b.log_hygiene.malformed.high


def test_a_number_where_text_belongs_is_rejected() -> None:
    """YAML reads an unquoted 1043 or 2.4 as a number, which would fill a slot differently: loading fails."""
    data = phrasebook().model_dump()
    data["slots"]["code"] = [1043, "2201"]
    with pytest.raises(ValidationError):
        Phrasebook.model_validate(data)


def test_catalog_comes_from_the_caller(tmp_path: Path) -> None:
    catalog = {"it_help": "Computers.", "facilities": "Buildings.", "legal": "Contracts."}
    meta = generate_demo(tmp_path, catalog, n_interactions=200, seed=1)
    assert meta["experts_without_phrasebook"] == ["legal"]
    line = (tmp_path / "logs.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert "- legal: Contracts." in json.loads(line)["request"]["messages"][0]["content"]
    truths = [json.loads(t) for t in (tmp_path / "hidden_truth.jsonl").read_text().splitlines()]
    assert {t["true_expert"] for t in truths} <= {"it_help", "facilities", None}
    with pytest.raises(ValueError):
        generate_demo(tmp_path / "none", {"legal": "Contracts."})
