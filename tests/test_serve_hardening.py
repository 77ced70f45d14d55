"""The router service under hostile input, a busy store and strangers: every answer logged exactly once,
bad input refused with a 4xx that shows no internals, an API key beyond localhost, the config's masker."""

import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import sqlalchemy as sa
import yaml
from conftest import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import OpenAI
from tiny_router import train_tiny_router

from flywheel.core.config import REPO_ROOT, PiiConfig, read_config_mapping
from flywheel.core.registry import Registry
from flywheel.core.store import Store, interactions
from flywheel.serve.app import create_app
from flywheel.serve.records import stored_interaction
from flywheel.serve.routing import RouterProvider

INTERNALS = (
    "Traceback",
    'File "',
    "sqlalchemy",
    "psycopg",
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "/work/",
    "site-",
)
KEY = "sk-flywheel-test-0123456789abcdef"
CONFIG = str(REPO_ROOT / "configs" / "test.yaml")


def chat_body(question: str, **extra) -> dict:
    return {"model": "router", "messages": [{"role": "user", "content": question}], **extra}


def post_raw(url: str, body: bytes, content_type: str | None = "application/json") -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return httpx.post(url, content=body, headers=headers, timeout=30)


def assert_clean_error(reply: httpx.Response) -> None:
    """A 4xx in OpenAI's shape that carries nothing of the service's insides."""
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text[:500])
    error = reply.json()["error"]
    assert error["message"] and error["type"]
    assert not any(marker in reply.text for marker in INTERNALS), reply.text[:500]


def serve_rows(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        query = sa.select(interactions.c.id).where(interactions.c.source == "serve")
        return [r[0] for r in conn.execute(query)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return train_tiny_router(tmp_path_factory.mktemp("hardening") / "tiny-tfidf")


# --- 11: every answer logged exactly once, or refused --------------------------------------------------


LONE_SURROGATE = "\ud800"


@pytest.mark.parametrize(
    "body",
    [
        chat_body(f"vpn {LONE_SURROGATE} down"),
        chat_body("vpn down", user=f"jo{LONE_SURROGATE}"),
        {"model": "router", "messages": [{"role": "user", "content": [{"type": "text", "text": "a\ud800"}]}]},
        {
            "model": "router",
            "messages": [{"role": "system", "content": "\udfff"}, {"role": "user", "content": "vpn"}],
        },
        {**chat_body("vpn down"), "metadata": {"k\ud800": 1}},
        chat_body("vpn \x00 down"),
    ],
    ids=["question", "user", "content-part", "system", "key", "nul"],
)
def test_text_no_store_can_hold_is_refused_with_400_and_nothing_is_logged(router_service, body):
    before = len(serve_rows(router_service.store))
    reply = post_raw(f"{router_service}/chat/completions", json.dumps(body).encode())
    assert reply.status_code == 400, reply.text
    assert_clean_error(reply)
    assert "surrogate" in reply.text or "NUL" in reply.text
    assert len(serve_rows(router_service.store)) == before


def test_a_feedback_comment_with_a_lone_surrogate_is_refused_and_the_interaction_unchanged(
    router_service,
):
    answer = httpx.post(f"{router_service}/chat/completions", json=chat_body("reset my password")).json()
    body = {"interaction_id": answer["id"], "thumbs": "down", "comment": f"bad {LONE_SURROGATE}"}
    reply = post_raw(f"{router_service}/feedback", json.dumps(body).encode())
    assert reply.status_code == 400
    assert_clean_error(reply)
    assert stored_interaction(router_service.store, answer["id"])["thumbs"] is None


def _ingest_file(path, n: int) -> None:
    """n valid log records (as a production gateway writes them), for a concurrent ingest."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            record = {
                "id": f"ingest-{i:07d}",
                "timestamp": "2026-09-08T10:15:02Z",
                "session_id": f"s-{i % 97}",
                "user_id": f"u-{i % 31}",
                "request": {
                    "model": "big",
                    "messages": [{"role": "user", "content": f"vpn down number {i}"}],
                },
                "response": {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "it_help"}}]
                },
                "routed_expert": "it_help",
                "model": "big",
                "latency_ms": 100.0,
                "tokens_in": 5,
                "tokens_out": 1,
            }
            f.write(json.dumps(record) + "\n")


def test_every_answer_is_logged_exactly_once_while_an_ingest_writes_the_same_store(
    tmp_path, tiny_model, serve_app
):
    """2,000 requests from 16 clients while `flywheel ingest` writes the same SQLite file from another
    process: each 200 has exactly one row, each refusal none (a lone surrogate gets 400)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    logs = tmp_path / "gateway.jsonl"
    n_ingest = 20_000
    _ingest_file(logs, n_ingest)
    command = [sys.executable, "-m", "flywheel.cli", "ingest", str(logs), "--store", url]
    command += ["--config", CONFIG, "--runs-dir", str(tmp_path / "runs")]
    ingest = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    questions = [f"my vpn is not connecting, attempt {i}" for i in range(2000)]
    for i in range(0, 2000, 50):
        questions[i] = f"vpn {LONE_SURROGATE} down {i}"  # refused: never a 200 without a row
    app = create_app(store, RouterProvider(Registry(store), default_model=tiny_model))
    with serve_app(app) as base_url:
        wait_until(lambda: store.count(interactions) > 0 or ingest.poll() is not None, 300, "the ingest")
        assert ingest.poll() is None, "the ingest finished before the requests started: make it longer"

        def send(chunk: list[str]) -> list[tuple[int, str | None]]:
            with httpx.Client(base_url=base_url, timeout=120) as client:
                out = []
                for question in chunk:
                    body = json.dumps(chat_body(question)).encode()
                    reply = client.post(
                        "/chat/completions", content=body, headers={"content-type": "application/json"}
                    )
                    out.append((reply.status_code, reply.headers.get("x-interaction-id")))
                return out

        with ThreadPoolExecutor(16) as pool:
            replies = [r for chunk in pool.map(send, [questions[i::16] for i in range(16)]) for r in chunk]
        ingest_out, ingest_err = ingest.communicate(timeout=600)
    assert ingest.returncode == 0, ingest_err[-2000:]
    assert json.loads(ingest_out.strip().splitlines()[-1])["accepted"] == n_ingest
    answered = [interaction_id for status, interaction_id in replies if status == 200]
    statuses = {status for status, _ in replies}
    assert statuses <= {200, 400}, statuses
    assert sum(status == 400 for status, _ in replies) == 40
    assert len(answered) == 1960
    logged = serve_rows(store)
    assert len(logged) == len(set(logged)) == 1960
    assert set(logged) == set(answered)


def test_a_locked_store_delays_answers_but_never_drops_their_log(tmp_path, tiny_model, serve_app):
    """While another connection holds the SQLite file's write lock past the busy timeout, a request waits
    (the writer retries) and is answered only once its record is committed."""
    path = tmp_path / "store.db"
    store = Store(f"sqlite:///{path}")
    sa.event.listen(store.engine, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout = 100"))
    store.engine.dispose()  # the connections made so far had the long timeout
    app = create_app(store, RouterProvider(Registry(store), default_model=tiny_model))
    with serve_app(app) as base_url:
        health = base_url.removesuffix("/v1") + "/health"
        assert httpx.get(health).status_code == 200
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, f"{base_url}/chat/completions", json=chat_body("vpn down"))

            def writer_retried() -> bool:
                counts = httpx.get(health, timeout=5).json().get("log", {})
                return counts.get("store_retries", 0) >= 3

            wait_until(lambda: pending.done() or writer_retried(), 60, "the writer to retry")
            answered_while_locked = pending.done()
            locker.execute("ROLLBACK")
            locker.close()
            reply = pending.result(timeout=60)
    assert not answered_while_locked, "answered while its record could not be stored"
    assert reply.status_code == 200
    assert stored_interaction(store, reply.json()["id"]) is not None


# --- 12: bad input gets a 4xx, no response carries internals -------------------------------------------


def _nested(depth: int) -> bytes:
    return b'{"model": "router", "messages": ' + b"[" * depth + b"]" * depth + b"}"


HOSTILE_CHAT_BODIES = {
    "nested 20,000 deep": (_nested(20_000), 400),
    "nested 100 deep": (_nested(100), 400),
    "NaN": (b'{"model": "router", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}', 400),
    "Infinity": (b'{"model": "router", "messages": [{"role": "user", "content": "x"}], "top_p": 1e999}', 400),
    "huge integer": (
        b'{"model": "router", "messages": [{"role": "user", "content": "x"}], "seed": ' + b"9" * 5000 + b"}",
        400,
    ),
    "huge n": (b'{"model": "router", "messages": [{"role": "user", "content": "x"}], "n": 1e308}', 422),
    "duplicate keys": (b'{"model": "a", "model": "b", "messages": [{"role": "user", "content": "x"}]}', 400),
    "invalid UTF-8": (b'{"model": "router", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400),
    "role null": (b'{"model": "router", "messages": [{"role": null, "content": "x"}]}', 422),
    "role number": (b'{"model": "router", "messages": [{"role": 7, "content": "x"}]}', 422),
    "message a string": (b'{"model": "router", "messages": ["hello"]}', 422),
    "message null": (b'{"model": "router", "messages": [null, {"role": "user", "content": "x"}]}', 422),
    "content a number": (b'{"model": "router", "messages": [{"role": "user", "content": 5}]}', 422),
    "content parts of numbers": (
        b'{"model": "router", "messages": [{"role": "user", "content": [1, 2]}]}',
        422,
    ),
    "only tool messages": (b'{"model": "router", "messages": [{"role": "tool", "content": "x"}]}', 422),
    "300 messages": (
        json.dumps(chat_body("x") | {"messages": [{"role": "user", "content": "x"}] * 300}).encode(),
        422,
    ),
    "model a list": (b'{"model": ["a"], "messages": [{"role": "user", "content": "x"}]}', 422),
    "stream a string": (
        b'{"model": "r", "messages": [{"role": "user", "content": "x"}], "stream": "maybe"}',
        422,
    ),
    "empty body": (b"", 400),
    "a bare string": (b'"hello"', 422),
    "very long question": (json.dumps(chat_body("vpn " * 40_000)).encode(), 413),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_CHAT_BODIES))
def test_hostile_chat_bodies_get_a_clean_4xx(router_service, name):
    body, status = HOSTILE_CHAT_BODIES[name]
    reply = post_raw(f"{router_service}/chat/completions", body)
    assert reply.status_code == status, reply.text[:300]
    assert_clean_error(reply)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
def test_a_body_declared_as_something_else_than_json_gets_415(router_service, content_type):
    reply = post_raw(
        f"{router_service}/chat/completions", json.dumps(chat_body("vpn")).encode(), content_type
    )
    assert reply.status_code == 415
    assert_clean_error(reply)


@pytest.mark.parametrize(
    "body",
    [
        _nested(20_000).replace(b'"model": "router", "messages"', b'"interaction_id": "x", "comment"'),
        b'{"interaction_id": "x", "thumbs": "up", "thumbs": "down"}',
        b'{"interaction_id": "x", "rating": 1e999}',
        b'{"interaction_id": "x", "rating": true}',
        b'{"interaction_id": "x", "comment": "a\\u0000b"}',
        b'{"interaction_id": ["x"], "thumbs": "up"}',
        json.dumps({"interaction_id": "x", "comment": "y" * 5000}).encode(),
    ],
    ids=["deep", "duplicate", "inf", "bool-rating", "nul", "id-list", "long-comment"],
)
def test_hostile_feedback_bodies_get_a_clean_4xx(router_service, body):
    assert_clean_error(post_raw(f"{router_service}/feedback", body))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
chat_shaped = st.fixed_dictionaries(
    {
        "model": st.text(max_size=10) | json_values,
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "system", "tool", "x"]) | json_values,
                    "content": st.text() | json_values,
                }
            )
            | json_values,
            max_size=3,
        ),
    },
    optional={"stream": json_values, "n": json_values, "user": json_values},
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=chat_shaped | json_values, path=st.sampled_from(["/chat/completions", "/feedback"]))
def test_fuzzed_bodies_never_get_a_5xx_or_internals(router_service, body, path):
    raw = json.dumps(body, allow_nan=True).encode("utf-8", errors="surrogatepass")
    reply = post_raw(f"{router_service}{path}", raw)
    assert reply.status_code < 500, reply.text[:300]
    if reply.status_code >= 400:
        assert_clean_error(reply)


def test_on_postgresql_a_nul_in_a_comment_gets_400_without_sql(pg_cluster, tiny_model, serve_app):
    store = Store(pg_cluster.create_database())
    app = create_app(store, RouterProvider(Registry(store), default_model=tiny_model))
    with serve_app(app) as base_url:
        answer = httpx.post(f"{base_url}/chat/completions", json=chat_body("reset my password")).json()
        assert stored_interaction(store, answer["id"]) is not None
        reply = httpx.post(
            f"{base_url}/feedback", json={"interaction_id": answer["id"], "thumbs": "up", "comment": "a\x00b"}
        )
        assert reply.status_code == 400
        assert_clean_error(reply)
        for body in (chat_body("vpn \x00 down"), chat_body(f"vpn {LONE_SURROGATE}")):
            assert_clean_error(post_raw(f"{base_url}/chat/completions", json.dumps(body).encode()))
        reply = httpx.post(
            f"{base_url}/feedback", json={"interaction_id": answer["id"], "thumbs": "up", "comment": "fine"}
        )
        assert reply.status_code == 200
    store.engine.dispose()


# --- 13: an API key, as OpenAI clients send it ------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory, tiny_model, serve_app):
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('keyed') / 'store.db'}")
    app = create_app(store, RouterProvider(Registry(store), default_model=tiny_model), api_key=KEY)
    with serve_app(app) as base_url:
        yield base_url, store


def test_with_a_key_the_openai_client_needs_it(keyed_service):
    base_url, store = keyed_service
    client = OpenAI(base_url=base_url, api_key=KEY, max_retries=0)
    answer = client.chat.completions.create(
        model="router", messages=[{"role": "user", "content": "vpn down"}]
    )
    assert answer.choices[0].message.content == "it_help"
    assert [m.id for m in client.models.list().data] == ["tiny-tfidf"]
    stranger = OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        stranger.chat.completions.create(model="router", messages=[{"role": "user", "content": "vpn"}])
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()
    assert len(serve_rows(store)) == 1  # the refused request was neither routed nor logged


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", "/chat/completions", {}),
        ("POST", "/feedback", {}),
        ("GET", "/models", {}),
        ("GET", "/nowhere", {}),
        ("POST", "/chat/completions", {"authorization": f"Basic {KEY}"}),
        ("POST", "/chat/completions", {"authorization": f"Bearer {KEY}x"}),
        ("POST", "/chat/completions", {"authorization": "Bearer"}),
    ],
)
def test_every_v1_route_refuses_a_missing_or_wrong_key_with_401(keyed_service, method, path, headers):
    base_url, _ = keyed_service
    reply = httpx.request(method, f"{base_url}{path}", json=chat_body("vpn"), headers=headers)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"
    assert KEY not in reply.text


def test_health_stays_open_and_feedback_works_with_the_key(keyed_service):
    base_url, store = keyed_service
    assert httpx.get(base_url.removesuffix("/v1") + "/health").json()["status"] == "ok"
    auth = {"authorization": f"Bearer {KEY}"}
    answer = httpx.post(f"{base_url}/chat/completions", json=chat_body("book a flight"), headers=auth).json()
    reply = httpx.post(
        f"{base_url}/feedback", json={"interaction_id": answer["id"], "rating": 4}, headers=auth
    )
    assert reply.status_code == 200
    assert stored_interaction(store, answer["id"])["rating"] == 4


def test_serving_beyond_localhost_needs_a_key(tmp_path, tiny_model, serve_app):
    from flywheel.serve.app import UnsafeBind

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    provider = RouterProvider(Registry(store), default_model=tiny_model)
    with (
        pytest.raises(UnsafeBind, match="FLYWHEEL_SERVE_API_KEY"),
        serve_app(create_app(store, provider), host="0.0.0.0"),
    ):
        pass
    with serve_app(create_app(store, provider, api_key=KEY), host="0.0.0.0") as base_url:
        port = base_url.rsplit(":", 1)[1].split("/")[0]
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        assert client.models.list().data[0].id == "tiny-tfidf"


def test_flywheel_serve_refuses_a_public_host_without_its_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FLYWHEEL_SERVE_API_KEY"}
    command = [sys.executable, "-m", "flywheel.cli", "serve", "--host", "0.0.0.0", "--port", "0"]
    command += ["--config", CONFIG, "--runs-dir", str(tmp_path)]
    # a service that does start would run until the timeout: that fails the test too
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "FLYWHEEL_SERVE_API_KEY" in done.stderr


# --- 14: one masker, the config's ----------------------------------------------------------------


PII = PiiConfig(employee_id_pattern=r"\bACME-\d{4}\b", keep_terms=["Vega Toolkit"])


def test_the_service_masks_questions_and_comments_with_the_configs_masker(tmp_path, tiny_model, serve_app):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    app = create_app(store, RouterProvider(Registry(store), default_model=tiny_model), pii=PII)
    with serve_app(app) as base_url:
        question = "my badge ACME-1234 fails and Vega Toolkit crashes, mail jo@example.com"
        # the first request loads the masker's NER model: seconds, more on a busy machine
        answer = httpx.post(f"{base_url}/chat/completions", json=chat_body(question), timeout=120).json()
        comment = "call me on +1 415 555 0100 or jo@example.com, badge ACME-1234; Vega Toolkit is fine"
        reply = httpx.post(
            f"{base_url}/feedback",
            json={"interaction_id": answer["id"], "thumbs": "down", "comment": comment},
            timeout=120,
        )
        assert reply.status_code == 200
    row = stored_interaction(store, answer["id"])
    assert row["query_masked"] == "my badge [EMPLOYEE_ID] fails and Vega Toolkit crashes, mail [EMAIL]"
    assert row["query"] == row["query_masked"]  # keep_original is off
    assert "jo@example.com" not in row["request_json"] and "ACME-1234" not in row["request_json"]
    assert row["comment"] == "call me on [PHONE] or [EMAIL], badge [EMPLOYEE_ID]; Vega Toolkit is fine"


def test_flywheel_serve_masks_with_the_configs_settings_end_to_end(tmp_path, tiny_model, free_port):
    """`flywheel serve --config` (a real process) with the test config's keep-terms and a custom id
    pattern; the key comes from the environment variable the config names."""
    config = tmp_path / "serve.yaml"
    settings = read_config_mapping(REPO_ROOT / "configs" / "test.yaml")  # the overlay resolved
    settings["collect"]["pii"]["employee_id_pattern"] = r"\bACME-\d{4}\b"
    settings["serve"]["api_key_env"] = "MY_ROUTER_KEY"
    config.write_text(yaml.safe_dump(settings))
    port = free_port
    url = f"sqlite:///{tmp_path / 'store.db'}"
    command = [sys.executable, "-m", "flywheel.cli", "serve", "--config", str(config), "--store", url]
    command += ["--runs-dir", str(tmp_path / "runs"), "--default-model", str(tiny_model), "--port", str(port)]
    command += ["--host", "0.0.0.0"]
    env = {**os.environ, "MY_ROUTER_KEY": KEY}
    errors = open(tmp_path / "serve.err", "w+")  # noqa: SIM115 (read after the process ends)
    service = subprocess.Popen(command, env=env, stderr=errors, text=True)
    try:
        wait_until(lambda: _healthy(port) or service.poll() is not None, 180, "flywheel serve to start")
        assert service.poll() is None, (tmp_path / "serve.err").read_text()[-2000:]
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        question = "badge ACME-1234 fails and Vega Toolkit crashes"
        answer = client.chat.completions.create(model="r", messages=[{"role": "user", "content": question}])
    except Exception:
        print((tmp_path / "serve.err").read_text()[-3000:])
        raise
    finally:
        service.terminate()
        service.wait(timeout=60)
        errors.close()
    row = stored_interaction(Store(url), answer.id)
    assert row["query_masked"] == "badge [EMPLOYEE_ID] fails and Vega Toolkit crashes"


def test_the_feedback_form_masks_with_the_configs_masker(store, tiny_model):
    from flywheel.serve.form import FeedbackForm

    form = FeedbackForm(store, RouterProvider(Registry(store), tiny_model), {}, user="dana", pii=PII)
    form.question.value = "badge ACME-1234 does not open the door"
    form.comment.value = "Vega Toolkit works; mail me at jo@example.com"
    form.thumbs.value = "down"
    row = stored_interaction(store, form.on_submit())
    assert row["query_masked"] == "badge [EMPLOYEE_ID] does not open the door"
    assert row["comment"] == "Vega Toolkit works; mail me at [EMAIL]"


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
