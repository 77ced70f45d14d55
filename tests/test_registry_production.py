"""Rollback to the production model (issue 11, item 8): from the first promotion a rollback puts the
production model (the large LLM that served before any promotion) back in service, recorded with its reason
in the history and the export; the router service and the feedback form then say so (503) or route through
the configured production endpoint. Sequences of promotions and rollbacks, and two processes writing at
once, keep a correct stack on SQLite and PostgreSQL."""

import json
import multiprocessing
import random
import socket

import httpx
import openai
import pytest
from openai import OpenAI
from tiny_router import TINY_EXAMPLES, train_tiny_router
from typer.testing import CliRunner

from flywheel.cli import app
from flywheel.core.config import REPO_ROOT, EndpointConfig, load_config
from flywheel.core.registry import PRODUCTION, Registry, RegistryError
from flywheel.core.routers import write_candidate_card
from flywheel.core.store import Store
from flywheel.serve.app import create_app
from flywheel.serve.form import FeedbackForm
from flywheel.serve.routing import ProductionServing, RouterProvider, provider_for

CATALOG = {name: f"questions about {name}" for name in TINY_EXAMPLES}


def candidate(tmp_path, name: str):
    """A folder that looks like a trained candidate (the registry reads only candidate.json)."""
    folder = tmp_path / "candidates" / name
    folder.mkdir(parents=True, exist_ok=True)
    write_candidate_card(folder, kind="tfidf_logreg", name=name, parameters=10)
    return folder


@pytest.fixture
def registry(any_store, tmp_path):
    return Registry(any_store, tmp_path / "registry.json")


def exported(tmp_path) -> dict:
    return json.loads((tmp_path / "registry.json").read_text())


def test_rollback_from_the_first_promotion_puts_the_production_model_back(registry, tmp_path):
    first = registry.promote(candidate(tmp_path, "a"), reason="cheapest eligible", cycle_id="c-1")
    event = registry.rollback("a misroutes payroll questions")
    assert event.event == "production"
    assert (event.model_name, event.artifact_path, event.metrics) == (PRODUCTION, "", {})
    assert (event.undoes_seq, event.restores_seq) == (first.seq, None)
    assert event.reason == "a misroutes payroll questions"
    assert registry.current() is None
    state = registry.state()
    assert state.on_production and state.rolled_back_to_production
    assert "production model is serving" in state.message()
    assert "a (entry 1) was rolled back: a misroutes payroll questions" in state.message()
    assert [(e.event, e.model_name) for e in registry.history()] == [
        ("promote", "a"),
        ("production", PRODUCTION),
    ]
    snapshot = exported(tmp_path)
    assert snapshot == registry.snapshot()
    assert snapshot["serving"]["state"] == PRODUCTION and snapshot["current"] is None
    assert snapshot["history"][-1]["reason"] == "a misroutes payroll questions"


def test_a_rollback_while_production_serves_is_refused_and_records_nothing(registry, tmp_path):
    registry.promote(candidate(tmp_path, "a"), reason="first")
    registry.rollback("bad")
    before = exported(tmp_path)
    with pytest.raises(RegistryError, match=r"nothing to roll back: the production model is serving since"):
        registry.rollback()
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback(to_production=True)
    assert len(registry.history()) == 2
    assert exported(tmp_path) == before


def test_rollback_to_production_undoes_every_promotion_at_once(registry, tmp_path):
    for name in ("a", "b", "c"):
        registry.promote(candidate(tmp_path, name), reason=name)
    event = registry.rollback("the small routers all regressed", to_production=True)
    assert event.event == "production" and event.undoes_seq == 3
    assert registry.current() is None and registry.state().stack == ()
    # the next promotion starts a new stack: its rollback goes to production, not to b
    registry.promote(candidate(tmp_path, "b"), reason="retrained")
    assert registry.rollback().event == "production"


def test_promoting_the_artifact_rolled_back_to_production_is_a_new_promotion(registry, tmp_path):
    folder = candidate(tmp_path, "a")
    registry.promote(folder, reason="first")
    registry.rollback()
    again = registry.promote(folder, reason="fixed data, same model")
    assert again.seq == 3 and registry.current() == again


def _reference_step(stack: list[str], op: str) -> bool:
    """The model a registry must match: returns False where the operation must be refused."""
    if op.startswith("promote:"):
        name = op.split(":")[1]
        if not stack or stack[-1] != name:
            stack.append(name)
        return True
    if not stack:
        return False
    if op == "rollback":
        stack.pop()
    else:
        stack.clear()
    return True


SEQUENCES = {
    "walk back to production and up again": [
        "promote:a", "promote:b", "promote:c", "rollback", "rollback", "rollback", "rollback",
        "promote:c", "promote:a", "rollback", "rollback", "promote:b",
    ],
    "re-promote the current, then production": [
        "promote:a", "promote:a", "promote:b", "promote:a", "to_production", "rollback", "promote:a",
        "promote:b", "rollback", "promote:b", "to_production", "to_production",
    ],
}  # fmt: skip
rng = random.Random(7)
SEQUENCES["random"] = [
    rng.choice(["promote:a", "promote:b", "promote:c", "rollback", "rollback", "to_production"])
    for _ in range(40)
]


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_promote_and_rollback_sequences_keep_the_stack(registry, tmp_path, name):
    folders = {n: candidate(tmp_path, n) for n in "abc"}
    expected: list[str] = []
    for step, op in enumerate(SEQUENCES[name]):
        allowed = _reference_step(expected, op)
        try:
            if op.startswith("promote:"):
                registry.promote(folders[op.split(":")[1]], reason=f"step {step}")
            else:
                registry.rollback(f"step {step}", to_production=op == "to_production")
            assert allowed, f"step {step} ({op}) should have been refused"
        except RegistryError:
            assert not allowed, f"step {step} ({op}) was refused"
        state = registry.state()
        assert [e.model_name for e in state.stack] == expected, f"after step {step} ({op})"
        assert state.serving == (expected[-1] if expected else PRODUCTION)
        if registry.history():
            assert exported(tmp_path) == registry.snapshot()
    _assert_history_replays_consistently(registry)


def _assert_history_replays_consistently(registry: Registry) -> None:
    """Every rollback undid the promotion then on top and restored the one below it."""
    stack = []
    for event in registry.history():
        if event.event == "promote":
            stack.append(event.seq)
            continue
        assert stack and event.undoes_seq == stack[-1], (
            f"event {event.seq} undid {event.undoes_seq}, top {stack}"
        )
        if event.event == "rollback":
            stack.pop()
            assert stack and event.restores_seq == stack[-1], (
                f"event {event.seq} restored {event.restores_seq}"
            )
        else:
            stack.clear()
    assert [e.seq for e in registry.state().stack] == stack


# --- two processes writing at once -------------------------------------------------------------------


def _promote_and_roll_back(url, export, folders, barrier, errors):
    try:
        registry = Registry(Store(url), export)
        barrier.wait(timeout=60)
        for folder in folders:
            registry.promote(folder, reason=f"worker promotes {folder.name}")
            registry.rollback(f"worker rolls back after {folder.name}")
    except Exception as err:  # reported to the test, which fails on it
        errors.put(f"{type(err).__name__}: {err}")


def test_two_processes_promoting_and_rolling_back_at_once_keep_a_correct_stack(any_store, tmp_path):
    """Each writer decides from the history it reads; without a lock both rolled back the same promotion
    (7 of 40 rollbacks here on SQLite, 5-12 on PostgreSQL) and the history no longer replayed."""
    export = tmp_path / "registry.json"
    registry = Registry(any_store, export)
    base = registry.promote(candidate(tmp_path, "base"), reason="in force before the workers start")
    url = any_store.engine.url.render_as_string(hide_password=False)
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(2), ctx.Queue()
    per_worker = 12
    workers = [
        ctx.Process(
            target=_promote_and_roll_back,
            args=(
                url,
                export,
                [candidate(tmp_path, f"w{w}-{k}") for k in range(per_worker)],
                barrier,
                errors,
            ),
        )
        for w in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    assert reported == []
    assert [w.exitcode for w in workers] == [0, 0]
    history = registry.history()
    assert sum(e.event == "promote" for e in history) == 2 * per_worker + 1
    _assert_history_replays_consistently(registry)
    assert registry.current() == base  # as many rollbacks as promotions
    assert json.loads(export.read_text()) == registry.snapshot()  # the last export is the final state


# --- the router service and the feedback form while production serves ----------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return train_tiny_router(tmp_path_factory.mktemp("models") / "tiny-a", name="tiny-a")


def ask(client, question):
    return client.chat.completions.create(model="any", messages=[{"role": "user", "content": question}])


def test_after_a_rollback_to_production_the_service_answers_503_and_says_why(tmp_path, tiny_model, serve_app):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    provider = RouterProvider(registry, default_model=tiny_model)  # a default is not a rollback target
    with serve_app(create_app(store, provider)) as base_url:
        client = OpenAI(base_url=base_url, api_key="x", max_retries=0)
        assert ask(client, "vpn down").model == "tiny-a"  # nothing promoted yet: the configured default
        registry.promote(tiny_model, reason="first cycle")
        registry.rollback("tiny-a misroutes payroll questions")
        with pytest.raises(openai.InternalServerError) as caught:
            ask(client, "vpn down")
        assert caught.value.status_code == 503
        assert "production model is serving" in caught.value.message
        assert "no small router" in caught.value.message
        assert client.models.list().data == []
        health = httpx.get(base_url.removesuffix("/v1") + "/health").json()
        assert health["status"] == "no_router" and "production model is serving" in health["detail"]
        registry.promote(tiny_model, reason="fixed")  # a promotion serves again, without a restart
        assert ask(client, "vpn down").model == "tiny-a"
    assert len(store.interactions_frame()) == 2  # the refused request was not logged


def test_with_a_production_endpoint_the_service_routes_through_it(
    router_service, tmp_path, tiny_model, serve_app
):
    """`serve.production_endpoint`: while production serves, questions go to that endpoint (here the real
    router service of the fixture stands in for the production LLM) and are logged under its model name."""
    config = load_config(REPO_ROOT / "configs" / "test.yaml")
    config.serve.production_endpoint = EndpointConfig(base_url=router_service, model="llama-production")
    config.experts = CATALOG
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    registry.promote(tiny_model, reason="first cycle")
    registry.rollback("back to production")
    provider = provider_for(config, registry)
    with serve_app(create_app(store, provider)) as base_url:
        client = OpenAI(base_url=base_url, api_key="x", max_retries=0)
        answer = ask(client, "book a meeting room")
        assert answer.model == "llama-production"
        assert answer.choices[0].message.content == "facilities"
        assert [m.owned_by for m in client.models.list().data] == ["flywheel-production"]
    assert store.interactions_frame()["model"].tolist() == ["llama-production"]
    upstream = router_service.store.interactions_frame(["query"])["query"].tolist()
    assert "book a meeting room" in upstream  # it really went over HTTP to the production endpoint


def test_an_unreachable_production_endpoint_gets_a_502_without_internals(tmp_path, tiny_model, serve_app):
    """The production endpoint down (after the client's retries): a 502 naming no host, nothing logged."""
    config = load_config(REPO_ROOT / "configs" / "test.yaml")
    closed_port = _free_port()
    config.serve.production_endpoint = EndpointConfig(
        base_url=f"http://127.0.0.1:{closed_port}/v1", model="llm"
    )
    config.experts = CATALOG
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    registry.promote(tiny_model, reason="first cycle")
    registry.rollback("back to production")
    with serve_app(create_app(store, provider_for(config, registry))) as base_url:
        client = OpenAI(base_url=base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            ask(client, "book a meeting room")
        assert caught.value.status_code == 502
        assert "upstream endpoint failed" in caught.value.message
        assert str(closed_port) not in caught.value.message
    assert store.interactions_frame().empty


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_feedback_form_says_production_is_serving_and_stores_nothing(tmp_path, tiny_model):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    registry.promote(tiny_model, reason="first cycle")
    registry.rollback("back to production")
    form = FeedbackForm(store, RouterProvider(registry, tiny_model), CATALOG)
    with pytest.raises(ProductionServing):
        form.provider.get()
    form.question.value = "vpn down"
    assert form.on_route() is None
    assert "production model is serving" in form.status.value
    form.thumbs.value = "down"
    assert form.on_submit() is None
    assert store.interactions_frame().empty


# --- the CLI -----------------------------------------------------------------------------------------


def cli(tmp_path, *args):
    base = ["promote", "--config", str(REPO_ROOT / "configs" / "test.yaml")]
    base += ["--store", f"sqlite:///{tmp_path / 'cli.db'}", "--runs-dir", str(tmp_path)]
    return CliRunner().invoke(app, [*base, *args])


def test_cli_rolls_back_to_production_shows_it_and_refuses_a_second_rollback(tmp_path):
    a = candidate(tmp_path, "a")
    assert cli(tmp_path, str(a), "--reason", "cheapest eligible").exit_code == 0
    rolled = cli(tmp_path, "--rollback", "--reason", "a misroutes payroll questions")
    assert rolled.exit_code == 0, rolled.output
    summary = json.loads(rolled.stdout)
    assert summary["rolled_back"] == "a" and summary["current"] is None
    assert summary["serving"]["state"] == PRODUCTION
    assert summary["event"]["event"] == "production"
    assert summary["event"]["reason"] == "a misroutes payroll questions"
    assert "production model is serving" in rolled.stderr

    shown = cli(tmp_path, "--show")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["serving"]["state"] == PRODUCTION
    assert "production model is serving" in shown.stderr and "a misroutes payroll questions" in shown.stderr
    export = json.loads((tmp_path / "registry-test.json").read_text())
    assert export["serving"]["state"] == PRODUCTION
    assert export["history"][-1]["event"] == "production"
    assert export["history"][-1]["reason"] == "a misroutes payroll questions"

    again = cli(tmp_path, "--rollback")
    assert again.exit_code == 1
    assert "nothing to roll back" in again.stderr and "production model is serving" in again.stderr


def test_cli_rollback_to_production_at_once(tmp_path):
    for name in ("a", "b"):
        assert cli(tmp_path, str(candidate(tmp_path, name)), "--reason", name).exit_code == 0
    assert cli(tmp_path, "--to-production").exit_code == 2  # only with --rollback
    rolled = cli(tmp_path, "--rollback", "--to-production")
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout)["rolled_back"] == "b"
    assert json.loads(cli(tmp_path, "--show").stdout)["stack"] == []
