"""Decisions in shadow over real HTTP (issue 14, items 2 and 4): the production model decides a sampled share
of the queries a small router answered, after the answer, and never those it answered itself; a production
failure in shadow never fails the user's request; the registry's candidate in shadow decides every query
while the promoted router answers; the service's clock dates what it logs. A second real router service
stands in for the production endpoint (like tests/test_serve_cascade.py), answering one constant expert."""

from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from conftest import wait_until
from openai import OpenAI
from tiny_router import NEAR_AND_FAR_QUESTIONS, TINY_EXAMPLES, train_tiny_router

from flywheel.core.cascade import write_cascade
from flywheel.core.config import EndpointConfig
from flywheel.core.registry import Registry
from flywheel.core.routers import load_router
from flywheel.core.store import Store
from flywheel.serve.app import create_app
from flywheel.serve.records import stored_interaction
from flywheel.serve.routing import ActiveRouter, Decision, RouterProvider, student_guess_model
from flywheel.serve.shadow import in_production_shadow

CATALOG = {name: f"questions about {name}" for name in TINY_EXAMPLES}
PRODUCTION_MODEL = "llama-production"
CONSTANT = "facilities"  # what the stand-in production model answers to everything
QUESTIONS = NEAR_AND_FAR_QUESTIONS


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "tiny-a": train_tiny_router(root / "tiny-a", name="tiny-a", seed=7),
        "tiny-b": train_tiny_router(root / "tiny-b", name="tiny-b", seed=8),
    }


class _ConstantRouter:
    name = "constant"

    def predict(self, texts):
        return [CONSTANT for _ in texts]


class _ConstantProvider(RouterProvider):
    """The stand-in production model's router: one expert for every question."""

    def get(self):
        return ActiveRouter("constant", "", "default", _ConstantRouter())


def _standin(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'standin.db'}")
    return create_app(store, _ConstantProvider(Registry(store))), store


def _endpoint(base_url: str, timeout_s: float = 30) -> EndpointConfig:
    return EndpointConfig(base_url=base_url, model=PRODUCTION_MODEL, timeout_s=timeout_s)


def ask(client, text):
    return client.chat.completions.create(model="router", messages=[{"role": "user", "content": text}])


def health(base_url: str) -> dict:
    return httpx.get(base_url.removesuffix("/v1") + "/health").json()


def settled(base_url: str) -> dict:
    """/health once every answered query's shadow decisions are written."""
    wait_until(lambda: health(base_url)["shadow"]["pending"] == 0, 60, "the shadow decisions")
    return health(base_url)


def test_production_in_shadow_decides_the_sampled_share_after_a_small_router_answered(
    tmp_path, models, serve_app
):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    registry.promote(models["tiny-a"], reason="cheaper")
    standin_app, standin_store = _standin(tmp_path)
    questions = [f"{q} (ticket {i})" for i in range(4) for q in QUESTIONS]  # 48 distinct queries
    with serve_app(standin_app) as production_url:
        provider = RouterProvider(registry, production_endpoint=_endpoint(production_url), experts=CATALOG)
        app = create_app(store, provider, production_shadow_share=0.5)
        with serve_app(app) as base_url:
            client = OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=60)
            answers = [ask(client, q) for q in questions]
            status = settled(base_url)

    assert {a.model for a in answers} == {"tiny-a"}  # the small router answered; production only in shadow
    sampled = {a.id for a in answers if in_production_shadow(a.id, 0.5)}
    assert 0.2 * len(questions) < len(sampled) < 0.8 * len(questions)
    rows = store.shadow_frame("production")
    assert set(rows["interaction_id"]) == sampled
    assert set(rows["model"]) == {PRODUCTION_MODEL} and set(rows["decision"]) == {CONSTANT}
    assert store.shadow_frame("candidate").empty  # nothing in shadow in the registry
    # the production endpoint was asked over HTTP for the sampled queries only, each once
    by_id = {a.id: q for a, q in zip(answers, questions, strict=True)}
    assert sorted(standin_store.interactions_frame(["query"])["query"]) == sorted(by_id[i] for i in sampled)
    shadow = status["shadow"]
    assert shadow["production"] == {
        "model": PRODUCTION_MODEL,
        "share": 0.5,
        "asked": len(sampled),
        "logged": len(sampled),
        "failures": 0,
    }
    assert (shadow["dropped"], shadow["write_failures"]) == (0, 0)


def test_queries_the_production_model_answered_are_never_asked_again(tmp_path, serve_app):
    """Nothing promoted: the production endpoint serves every query, so share 1 asks nothing in shadow."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    standin_app, standin_store = _standin(tmp_path)
    with serve_app(standin_app) as production_url:
        provider = RouterProvider(
            Registry(store), production_endpoint=_endpoint(production_url), experts=CATALOG
        )
        with serve_app(create_app(store, provider, production_shadow_share=1.0)) as base_url:
            client = OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=60)
            answers = [ask(client, q) for q in QUESTIONS]
            status = settled(base_url)
    assert {(a.model, a.choices[0].message.content) for a in answers} == {(PRODUCTION_MODEL, CONSTANT)}
    assert store.shadow_frame().empty
    assert sorted(standin_store.interactions_frame(["query"])["query"]) == sorted(QUESTIONS)  # once each
    assert status["shadow"]["production"]["asked"] == 0


def test_a_production_failure_in_shadow_still_answers_and_is_counted(tmp_path, models, serve_app, free_port):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    registry.promote(models["tiny-a"], reason="cheaper")
    down = _endpoint(f"http://127.0.0.1:{free_port}/v1", timeout_s=5)  # nothing listens there
    provider = RouterProvider(registry, production_endpoint=down, experts=CATALOG)
    with serve_app(create_app(store, provider, production_shadow_share=1.0)) as base_url:
        client = OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=60)
        answers = [ask(client, q) for q in QUESTIONS[:3]]
        status = settled(base_url)
    assert [a.model for a in answers] == ["tiny-a"] * 3  # 200s, from the small router
    assert all(stored_interaction(store, a.id) is not None for a in answers)
    assert status["status"] == "ok"
    assert status["shadow"]["production"] | {"share": None} == {
        "model": PRODUCTION_MODEL,
        "share": None,
        "asked": 3,
        "logged": 0,
        "failures": 3,
    }
    assert store.shadow_frame().empty


def test_the_candidate_in_shadow_decides_every_query_while_the_promoted_router_answers(
    tmp_path, models, serve_app
):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    registry.promote(models["tiny-a"], reason="in service")
    registry.shadow(models["tiny-b"], reason="passes the offline rule", cycle_id="c-2")
    expected = dict(zip(QUESTIONS, load_router(models["tiny-b"]).predict(QUESTIONS), strict=True))
    with serve_app(create_app(store, RouterProvider(registry))) as base_url:
        client = OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list().data] == ["tiny-a"]
        answers = [ask(client, q) for q in QUESTIONS]
        status = settled(base_url)
        registry.reject("its shadow week did not hold")
        after = ask(client, QUESTIONS[0])
        later = settled(base_url)

    assert {a.model for a in answers} == {"tiny-a"}  # the candidate never answers
    rows = store.shadow_frame("candidate").set_index("interaction_id")
    assert set(rows.index) == {a.id for a in answers}  # every query, and none after the reject
    assert set(rows["model"]) == {"tiny-b"}
    for answer, question in zip(answers, QUESTIONS, strict=True):
        assert rows.loc[answer.id, "decision"] == expected[question]
    assert after.id not in rows.index
    assert status["shadow"]["candidate"] == {
        "model": "tiny-b",
        "logged": len(QUESTIONS),
        "student_guesses": 0,
        "failures": 0,
    }
    assert later["shadow"]["candidate"]["model"] is None
    assert store.shadow_frame("production").empty  # no production endpoint: nothing asked


def test_a_cascade_in_shadow_takes_production_decisions_it_has_and_marks_student_guesses(
    tmp_path, models, serve_app
):
    """Its deferrals are never sent to production: while production serves, its decisions are production's
    answers; once a single router serves (no production in shadow), the student's guess, marked."""
    student = load_router(models["tiny-b"])
    proba = student.predict_proba(QUESTIONS)
    top = np.sort(proba.max(axis=1))
    gap = int(np.diff(top).argmax())
    threshold = float((top[gap] + top[gap + 1]) / 2)  # in the widest gap between confidences
    deferred = proba.max(axis=1) < threshold
    assert 0 < deferred.sum() < len(QUESTIONS)
    own = [student.labels[i] for i in proba.argmax(axis=1)]
    cascade = write_cascade(tmp_path / "cascade", models["tiny-b"], threshold, "tiny-b+defer")

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    registry.shadow(cascade, reason="cheaper than production")
    standin_app, standin_store = _standin(tmp_path)
    with serve_app(standin_app) as production_url:
        provider = RouterProvider(registry, production_endpoint=_endpoint(production_url), experts=CATALOG)
        with serve_app(create_app(store, provider)) as base_url:
            client = OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=60)
            by_production = [ask(client, q) for q in QUESTIONS]
            settled(base_url)
            registry.promote(models["tiny-a"], reason="a single router serves now")
            by_student = [ask(client, q) for q in QUESTIONS]
            status = settled(base_url)

    rows = store.shadow_frame("candidate").set_index("interaction_id")
    assert len(rows) == 2 * len(QUESTIONS)
    for answer, was_deferred, label in zip(by_production, deferred, own, strict=True):
        assert answer.model == PRODUCTION_MODEL
        expected = CONSTANT if was_deferred else label
        assert (rows.loc[answer.id, "model"], rows.loc[answer.id, "decision"]) == ("tiny-b+defer", expected)
    for answer, was_deferred, label in zip(by_student, deferred, own, strict=True):
        assert answer.model == "tiny-a"
        model = student_guess_model("tiny-b+defer") if was_deferred else "tiny-b+defer"
        assert (rows.loc[answer.id, "model"], rows.loc[answer.id, "decision"]) == (model, label)
    # production was asked by the service it served, never by the cascade in shadow
    assert len(standin_store.interactions_frame(["query"])) == len(QUESTIONS)
    assert status["shadow"]["candidate"]["student_guesses"] == deferred.sum()


def test_the_clock_dates_the_logged_interactions_and_shadow_decisions(tmp_path, models, serve_app):
    start = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
    ticks = iter(start + timedelta(hours=k) for k in range(1000))
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    registry.promote(models["tiny-a"], reason="in service")
    registry.shadow(models["tiny-b"], reason="candidate")
    with serve_app(create_app(store, RouterProvider(registry), clock=lambda: next(ticks))) as base_url:
        client = OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=60)
        answers = [ask(client, q) for q in QUESTIONS[:3]]
        settled(base_url)
    logged = store.interactions_frame(["id", "timestamp"]).set_index("id")["timestamp"]
    stamps = [logged[a.id].to_pydatetime() for a in answers]
    assert stamps == sorted(stamps) and all(start <= s < start + timedelta(hours=1000) for s in stamps)
    assert [s.minute for s in stamps] == [0, 0, 0]  # the clock's hours, not the wall clock's
    assert [a.created for a in answers] == [int(s.timestamp()) for s in stamps]
    decided = store.shadow_frame("candidate")["decided_at"]
    assert all(start < d.to_pydatetime() < start + timedelta(hours=1000) for d in decided)


def test_the_production_sample_is_deterministic_by_id_and_near_its_share():
    ids = [f"chatcmpl-{k:06d}" for k in range(20_000)]
    for share in (0.1, 0.5):
        chosen = [in_production_shadow(i, share) for i in ids]
        assert abs(sum(chosen) / len(ids) - share) < 0.01
        assert chosen == [in_production_shadow(i, share) for i in ids]
    assert not any(in_production_shadow(i, 0.0) for i in ids[:100])
    assert all(in_production_shadow(i, 1.0) for i in ids[:100])
    # a smaller share samples a subset of a larger one: raising it keeps the earlier labels coming
    assert all(in_production_shadow(i, 0.5) for i in ids if in_production_shadow(i, 0.1))


def test_decision_of_a_cascade_in_shadow_without_a_service(models):
    """The rule itself: production decisions by position, including a production 'no single expert'."""
    from flywheel.serve.routing import ShadowCandidate

    student = load_router(models["tiny-b"])
    texts = ["vpn is not connecting", "hello"]
    confident = ShadowCandidate("c", "", student, threshold=0.0)
    assert [d.model for d in confident.decide(texts, {})] == ["c", "c"]
    unsure = ShadowCandidate("c", "", student, threshold=1.01)  # defers everything
    decisions = unsure.decide(texts, {1: None})
    assert decisions[1] == Decision(None, "c")
    assert decisions[0].model == "c/student" and decisions[0].expert == student.predict(texts[:1])[0]


def test_flywheel_serve_names_what_it_decides_in_shadow(tmp_path, models, capsys):
    from flywheel.serve.cli import _echo_shadows

    registry = Registry(Store(f"sqlite:///{tmp_path / 'store.db'}"))
    registry.shadow(models["tiny-b"], reason="candidate")
    endpoint = _endpoint("http://127.0.0.1:9/v1")
    _echo_shadows(RouterProvider(registry, production_endpoint=endpoint, experts=CATALOG), 0.1)
    said = capsys.readouterr().err
    assert f"production in shadow: {PRODUCTION_MODEL} also decides 10% of the queries" in said
    assert "in shadow: tiny-b (a single router) decides every query" in said
    _echo_shadows(RouterProvider(registry), 0.1)
    assert "serve.production_endpoint is not" in capsys.readouterr().err
