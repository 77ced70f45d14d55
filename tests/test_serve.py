"""The router service over real HTTP with the real `openai` client: answers, logging, feedback, errors."""

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai import OpenAI
from tiny_router import TINY_EXAMPLES, train_tiny_router

from flywheel.core.registry import Registry
from flywheel.core.routers import read_candidate_card, write_candidate_card
from flywheel.core.schema import Interaction
from flywheel.core.store import Store
from flywheel.serve.app import create_app
from flywheel.serve.records import stored_interaction
from flywheel.serve.routing import ActiveRouter, RouterProvider


@pytest.fixture
def client(router_service):
    return OpenAI(base_url=router_service, api_key="not-needed", max_retries=0, timeout=30)


def ask(client, text, **kwargs):
    return client.chat.completions.create(
        model="router",
        messages=[{"role": "system", "content": "route"}, {"role": "user", "content": text}],
        **kwargs,
    )


def test_models_lists_the_router_in_force(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny-tfidf"]


def test_chat_completion_answers_with_the_routed_expert(client):
    completion = ask(client, "my vpn is not connecting")
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "tiny-tfidf"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "it_help"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage.prompt_tokens == 6  # "route" + "my vpn is not connecting"
    assert usage.completion_tokens >= 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_every_interaction_is_logged_in_the_schema(client, router_service):
    completion = ask(client, "book a business flight for jo@example.com")
    row = stored_interaction(router_service.store, completion.id)
    assert row is not None
    assert "book a business flight for" in row["query"]
    assert row["query_masked"] == "book a business flight for [EMAIL]"  # PII-masked like ingested traffic
    assert row["routed_expert"] == completion.choices[0].message.content == "travel_expenses"
    assert row["model"] == "tiny-tfidf"
    assert row["source"] == "serve"
    assert 0 < row["latency_ms"] < 60_000
    assert row["tokens_in"] == completion.usage.prompt_tokens
    assert row["tokens_out"] == completion.usage.completion_tokens
    assert row["thumbs"] is None and row["satisfied"] is None
    request, response = json.loads(row["request_json"]), json.loads(row["response_json"])
    assert request["model"] == "router"  # as sent
    assert response["id"] == completion.id
    assert response["choices"][0]["message"]["content"] == "travel_expenses"
    # The stored request/response are a valid log record: ingestion would accept them.
    Interaction.model_validate(
        {**row, "request": request, "response": response, "feedback": None, "timestamp": row["timestamp"]}
    )


def test_end_user_ids_are_pseudonymised_and_sessions_kept(client, router_service):
    headers = {"X-Flywheel-Session": "session-42"}
    first = ask(client, "reset my password", user="alice@example.com", extra_headers=headers)
    second = ask(client, "still cannot log in", user="alice@example.com", extra_headers=headers)
    rows = [stored_interaction(router_service.store, c.id) for c in (first, second)]
    assert rows[0]["user_id"] == rows[1]["user_id"]
    assert rows[0]["user_id"].startswith("u-")
    assert rows[0]["session_id"] == rows[1]["session_id"] != "session-42"
    for row in rows:
        assert "alice" not in row["request_json"] and "alice" not in row["user_id"]


def test_streaming_answers_in_openai_chunks(client, router_service):
    stream = ask(
        client, "when is the next earnings call", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "finance_earnings"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    row = stored_interaction(router_service.store, chunks[0].id)
    assert row["routed_expert"] == "finance_earnings"
    assert row["ttft_ms"] is not None


def test_feedback_is_recorded_on_the_interaction(client, router_service):
    completion = ask(client, "where is my pay slip")
    feedback_url = f"{router_service}/feedback"
    reply = httpx.post(
        feedback_url, json={"interaction_id": completion.id, "thumbs": "down", "comment": "HR?"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["satisfied"] is False
    row = stored_interaction(router_service.store, completion.id)
    assert (row["thumbs"], row["rating"], row["comment"], row["satisfied"]) == ("down", None, "HR?", False)

    reply = httpx.post(feedback_url, json={"interaction_id": completion.id, "rating": 5})
    assert reply.status_code == 200
    row = stored_interaction(router_service.store, completion.id)
    assert (row["thumbs"], row["rating"], row["satisfied"]) == (None, 5, True)  # the latest word wins


@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        ({"interaction_id": "chatcmpl-unknown", "thumbs": "up"}, 404, "no interaction"),
        ({"interaction_id": "x"}, 422, "no thumbs, rating or comment"),
        ({"interaction_id": "x", "rating": 9}, 422, "rating"),
        ({"interaction_id": "x", "thumbs": "sideways"}, 422, "thumbs"),
        ({"interaction_id": "x", "thumbs": "up", "extra": 1}, 422, "extra"),
        ({"thumbs": "up"}, 422, "interaction_id"),
    ],
)
def test_bad_feedback_gets_a_clear_4xx(router_service, body, status, phrase):
    reply = httpx.post(f"{router_service}/feedback", json=body)
    assert reply.status_code == status
    assert phrase in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        (
            {"model": "router", "messages": [{"role": "system", "content": "only a system prompt"}]},
            "no user message",
        ),
        ({"model": "router", "messages": []}, "messages"),
        ({"model": "router", "messages": [{"role": "user", "content": "   "}]}, "empty"),
        ({"model": "router", "messages": [{"role": "wizard", "content": "hi"}]}, "role"),
        ({"model": "", "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "router", "messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ],
)
def test_bad_chat_requests_get_422_with_a_message(client, kwargs, phrase):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(**kwargs)
    assert caught.value.status_code == 422
    assert phrase in caught.value.message


def test_unreadable_bodies_get_400_or_422(router_service):
    url = f"{router_service}/chat/completions"
    broken = httpx.post(
        url, content=b'{"model": "router", "messages": [', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]["message"]
    binary = httpx.post(url, content=b"\xff\xfe\x00junk")
    assert binary.status_code == 400
    not_an_object = httpx.post(url, json=[1, 2, 3])
    assert not_an_object.status_code == 422
    assert "JSON object" in not_an_object.json()["error"]["message"]


def test_unknown_paths_and_methods_are_4xx_in_openai_shape(router_service):
    missing = httpx.get(f"{router_service}/embeddings")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert httpx.get(f"{router_service}/chat/completions").status_code == 405


def test_oversize_requests_get_413_and_the_service_keeps_answering(client, router_service):
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client, "vpn " * 20_000)  # ~80 KB, over the 64 KB default
    assert caught.value.status_code == 413
    assert "limit" in caught.value.message

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(100):
            yield b" " * 1024

    chunked = httpx.post(f"{router_service}/chat/completions", content=chunks())
    assert chunked.status_code == 413
    assert ask(client, "reset my password please").choices[0].message.content == "it_help"


def test_concurrent_requests_are_all_answered_and_logged(client, router_service):
    questions = [text for texts in TINY_EXAMPLES.values() for text in texts][:8]
    with ThreadPoolExecutor(4) as pool:
        completions = list(pool.map(lambda q: ask(client, q), questions))
    assert len({c.id for c in completions}) == len(questions)
    for completion in completions:
        assert stored_interaction(router_service.store, completion.id) is not None


# --- which router answers: promoted, default, none ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return train_tiny_router(tmp_path_factory.mktemp("models") / "tiny-a", name="tiny-a")


def test_without_any_router_the_service_says_503_and_what_to_do(tmp_path, serve_app):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    with serve_app(create_app(store, RouterProvider(Registry(store)))) as base_url:
        client = OpenAI(base_url=base_url, api_key="x", max_retries=0)
        assert client.models.list().data == []
        with pytest.raises(openai.InternalServerError) as caught:
            ask(client, "vpn down")
        assert caught.value.status_code == 503
        assert "promote" in caught.value.message and "cycle" in caught.value.message
        assert httpx.get(base_url.removesuffix("/v1") + "/health").json()["status"] == "no_router"
    assert store.interactions_frame().empty


def test_promotion_and_rollback_switch_the_router_without_a_restart(tmp_path, tiny_model, serve_app):
    promoted = tmp_path / "tiny-b"
    shutil.copytree(tiny_model, promoted)
    write_candidate_card(promoted, **{**read_candidate_card(promoted), "name": "tiny-b"})
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = Registry(store)
    with serve_app(create_app(store, RouterProvider(registry, default_model=tiny_model))) as base_url:
        client = OpenAI(base_url=base_url, api_key="x", max_retries=0)
        assert ask(client, "vpn down").model == "tiny-a"  # the configured default
        registry.promote(tiny_model, reason="first cycle")
        registry.promote(promoted, reason="second cycle")
        assert ask(client, "vpn down").model == "tiny-b"
        assert [m.id for m in client.models.list().data] == ["tiny-b"]
        registry.rollback("tiny-b regressed")
        assert ask(client, "vpn down").model == "tiny-a"
    assert list(store.interactions_frame()["model"]) == ["tiny-a", "tiny-b", "tiny-a"]


class _BrokenRouter:
    name = "broken"

    def predict(self, texts):
        raise RuntimeError("model weights are corrupt")


def test_a_failing_router_gives_a_500_in_openai_shape_and_the_service_lives_on(tmp_path, serve_app):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    provider = RouterProvider(Registry(store))
    provider.get = lambda: ActiveRouter("broken", str(tmp_path), "default", _BrokenRouter())
    with serve_app(create_app(store, provider)) as base_url:
        client = OpenAI(base_url=base_url, api_key="x", max_retries=0)
        for _ in range(2):  # still answering after the first failure
            with pytest.raises(openai.InternalServerError) as caught:
                ask(client, "vpn down")
            assert caught.value.status_code == 500
            assert "internal error (reference" in caught.value.message
            assert "corrupt" not in caught.value.message  # internals stay in the service log
        assert httpx.get(f"{base_url}/models").status_code == 200
