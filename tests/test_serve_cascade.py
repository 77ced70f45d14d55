"""A promoted cascade served for real (issue 13, item 5): the student answers the questions it is confident
about, the rest go over HTTP to the production endpoint (here a second router service standing in for the
production LLM, answering one constant expert the student would not), and each logged interaction names the
model that decided. The production endpoint down: a deferred question gets a 502, never the student's
guess."""

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI
from tiny_router import NEAR_AND_FAR_QUESTIONS, TINY_EXAMPLES, train_tiny_router

from flywheel.core.cascade import CascadeRouter, NoProductionRouter, write_cascade
from flywheel.core.config import EndpointConfig
from flywheel.core.registry import Registry
from flywheel.core.routers import load_router, read_candidate_card
from flywheel.core.store import Store
from flywheel.serve.app import create_app
from flywheel.serve.records import stored_interaction
from flywheel.serve.routing import ActiveRouter, RouterProvider

CATALOG = {name: f"questions about {name}" for name in TINY_EXAMPLES}
PRODUCTION_MODEL = "llama-production"
QUESTIONS = NEAR_AND_FAR_QUESTIONS


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return train_tiny_router(tmp_path_factory.mktemp("student") / "tiny-student", name="tiny-student")


@pytest.fixture(scope="module")
def plan(student):
    """The student's own view of QUESTIONS: a threshold in the widest gap between its confidences (the
    unsure questions defer), the answers it would give, and a constant expert it gives to none of the
    deferred ones."""
    router = load_router(student)
    proba = router.predict_proba(QUESTIONS)
    top = np.sort(proba.max(axis=1))
    gap = int(np.diff(top).argmax())
    threshold = float((top[gap] + top[gap + 1]) / 2)
    deferred = proba.max(axis=1) < threshold
    assert 2 <= deferred.sum() <= len(QUESTIONS) - 2, (top, threshold)
    own = [router.labels[i] for i in proba.argmax(axis=1)]
    constant = next(label for label in CATALOG if label not in {own[i] for i in np.flatnonzero(deferred)})
    return {"threshold": threshold, "deferred": deferred, "own": own, "constant": constant}


class _ConstantRouter:
    """The stand-in production model: one expert for every question."""

    def __init__(self, expert: str):
        self.name, self.expert = "constant", expert

    def predict(self, texts):
        return [self.expert for _ in texts]


def _standin(tmp_path, expert: str):
    """A second router service (the real app) that answers `expert` to everything, with its own store."""
    store = Store(f"sqlite:///{tmp_path / 'standin.db'}")
    provider = RouterProvider(Registry(store))
    provider.get = lambda: ActiveRouter("constant", "", "default", _ConstantRouter(expert))
    return create_app(store, provider), store


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ask(client, text):
    return client.chat.completions.create(model="router", messages=[{"role": "user", "content": text}])


def test_a_promoted_cascade_defers_its_unsure_questions_to_the_production_endpoint(
    tmp_path, student, plan, serve_app
):
    cascade = write_cascade(tmp_path / "cascade", student, plan["threshold"], "tiny-cascade")
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    registry.promote(cascade, reason="within the margin at half the cost", metrics={"deferral": 0.5})
    standin_app, standin_store = _standin(tmp_path, plan["constant"])
    with serve_app(standin_app) as production_url:
        endpoint = EndpointConfig(base_url=production_url, model=PRODUCTION_MODEL, timeout_s=30)
        provider = RouterProvider(registry, production_endpoint=endpoint, experts=CATALOG)
        with serve_app(create_app(store, provider)) as base_url:
            client = OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=60)
            assert [m.id for m in client.models.list().data] == ["tiny-cascade"]
            with ThreadPoolExecutor(len(QUESTIONS)) as pool:  # together: batches mix both kinds
                answers = list(pool.map(lambda q: ask(client, q), QUESTIONS))
            health = httpx.get(base_url.removesuffix("/v1") + "/health").json()

    deferred = plan["deferred"]
    assert 0 < deferred.sum() < len(QUESTIONS)
    for answer, was_deferred, own in zip(answers, deferred, plan["own"], strict=True):
        content = answer.choices[0].message.content
        if was_deferred:  # the stand-in's answer, which the student would not have given
            assert (content, answer.model) == (plan["constant"], PRODUCTION_MODEL)
            assert content != own
        else:
            assert (content, answer.model) == (own, "tiny-student")
        row = stored_interaction(store, answer.id)
        assert (row["routed_expert"], row["model"]) == (content, answer.model)
        assert json.loads(row["response_json"])["model"] == answer.model

    # the production endpoint was asked over HTTP for the deferred questions only, each once
    upstream = sorted(standin_store.interactions_frame(["query"])["query"])
    assert upstream == sorted(q for q, d in zip(QUESTIONS, deferred, strict=True) if d)

    assert health["status"] == "ok" and health["model"] == "tiny-cascade"
    assert health["cascade"]["threshold"] == pytest.approx(plan["threshold"])
    parts = health["cascade"]
    assert (parts["student"], parts["production"]) == ("tiny-student", PRODUCTION_MODEL)
    assert (parts["queries"], parts["deferred"]) == (len(QUESTIONS), deferred.sum())


def test_the_production_endpoint_down_gets_deferred_questions_a_502_and_confident_ones_answered(
    tmp_path, student, plan, serve_app
):
    """The cascade as the configured default model, its production endpoint on a closed port."""
    cascade = write_cascade(tmp_path / "cascade", student, plan["threshold"], "tiny-cascade")
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    port = _closed_port()
    endpoint = EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model=PRODUCTION_MODEL, timeout_s=5)
    provider = RouterProvider(Registry(store), cascade, production_endpoint=endpoint, experts=CATALOG)
    unsure = QUESTIONS[int(np.flatnonzero(plan["deferred"])[0])]
    sure_index = int(np.flatnonzero(~plan["deferred"])[0])
    with serve_app(create_app(store, provider)) as base_url:
        client = OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=60)
        with pytest.raises(openai.APIStatusError) as caught:
            ask(client, unsure)
        assert caught.value.status_code == 502
        assert "deferred this question to the production model" in caught.value.message
        assert str(port) not in caught.value.message  # no host or port: internals stay in the log
        sure = ask(client, QUESTIONS[sure_index])
        assert (sure.choices[0].message.content, sure.model) == (plan["own"][sure_index], "tiny-student")
        health = httpx.get(base_url.removesuffix("/v1") + "/health").json()
    assert health["cascade"]["production_failures"] == 1
    assert store.interactions_frame()["model"].tolist() == ["tiny-student"]  # the refused one: not logged


def test_a_cascade_without_a_production_endpoint_says_what_to_configure(tmp_path, student, plan, serve_app):
    cascade = write_cascade(tmp_path / "cascade", student, plan["threshold"], "tiny-cascade")
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    registry.promote(cascade, reason="cheaper")
    with serve_app(create_app(store, RouterProvider(registry, experts=CATALOG))) as base_url:
        client = OpenAI(base_url=base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            ask(client, QUESTIONS[0])
        assert caught.value.status_code == 503
        assert "serve.production_endpoint must be configured" in caught.value.message
        assert str(tmp_path) not in caught.value.message
        health = httpx.get(base_url.removesuffix("/v1") + "/health").json()
    assert health["status"] == "no_router" and "serve.production_endpoint" in health["detail"]
    assert store.interactions_frame().empty


# --- the cascade folder and router, without a service ------------------------------------------------


class _RecordingProduction:
    name = "recorded-production"

    def __init__(self, answer: str = "facilities", fail: bool = False):
        self.answer, self.fail, self.asked = answer, fail, []

    def predict(self, texts):
        self.asked.append(list(texts))
        if self.fail:
            raise ConnectionError("production endpoint down")
        return [self.answer for _ in texts]


def test_write_cascade_makes_a_candidate_folder_the_registry_and_load_router_take(tmp_path, student, plan):
    folder = write_cascade(tmp_path / "c", student, 0.4, "tiny-cascade")
    card = read_candidate_card(folder)
    assert (card["kind"], card["name"], card["threshold"], card["student"]) == (
        "cascade",
        "tiny-cascade",
        0.4,
        "student",
    )
    assert card["labels"] == load_router(student).labels
    assert read_candidate_card(folder / "student") == read_candidate_card(student)
    assert card["parameters"] == read_candidate_card(student)["parameters"]
    write_cascade(folder, student, 0.5, "tiny-cascade")  # a re-run rewrites it
    assert read_candidate_card(folder)["threshold"] == 0.5
    with pytest.raises(NoProductionRouter, match=r"serve\.production_endpoint must be configured"):
        load_router(folder)
    with pytest.raises(ValueError, match="cascade already"):
        write_cascade(tmp_path / "d", folder, 0.5, "nested")
    entry = Registry(Store(f"sqlite:///{tmp_path / 'r.db'}")).promote(folder, reason="test")
    assert entry.model_name == "tiny-cascade"


def test_the_cascade_router_asks_production_for_the_deferred_queries_only(student, plan, tmp_path):
    production = _RecordingProduction(plan["constant"])
    folder = write_cascade(tmp_path / "c", student, plan["threshold"], "tiny-cascade")
    cascade = load_router(folder, production=production)
    assert isinstance(cascade, CascadeRouter)
    decisions = cascade.predict(QUESTIONS)
    deferred = plan["deferred"]
    assert production.asked == [[q for q, d in zip(QUESTIONS, deferred, strict=True) if d]]
    expected = [plan["constant"] if d else own for d, own in zip(deferred, plan["own"], strict=True)]
    assert decisions == expected
    assert cascade.last_deferred == deferred.sum()
    everything_sure = CascadeRouter("all-sure", cascade.student, 0.0, production)
    assert everything_sure.predict(QUESTIONS) == plan["own"] and len(production.asked) == 1
    assert cascade.predict([]) == []


def test_a_failing_production_router_is_never_replaced_by_the_student(student, plan):
    cascade = CascadeRouter("c", load_router(student), plan["threshold"], _RecordingProduction(fail=True))
    outcome = cascade.decide(QUESTIONS)
    assert isinstance(outcome.error, ConnectionError)
    for decision, deferred, own in zip(outcome.decisions, outcome.deferred, plan["own"], strict=True):
        assert decision == (None if deferred else own)
    with pytest.raises(ConnectionError):
        cascade.predict(QUESTIONS)
    assert cascade.counts["production_failures"] == 2
