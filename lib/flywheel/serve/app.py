"""The OpenAI-compatible router service (FastAPI).

    GET  /v1/models              the router in force (an empty list when there is none)
    POST /v1/chat/completions    route the last user message; the assistant message is the expert's name
    POST /v1/feedback            {interaction_id, thumbs | rating, comment} for an earlier answer
    GET  /health                 liveness, the router in force (a cascade: its threshold and deferrals), the
                                 log writer's counts and the shadow decisions' (no key needed)

Every answered question is logged to the store exactly once, as an interaction in the documented log schema
with the measured routing latency, PII-masked with the config's `collect.pii` masker; the interaction id is
the completion id (`completion.id`, also the `X-Interaction-Id` header), which is what feedback refers to.
The answer goes out only after its record is committed (`records.InteractionLog`): a request the store
cannot take in time is refused with 503, never answered unlogged. Questions arriving together are routed in
one `predict` call.

After the answer, a worker of its own (`shadow.ShadowWorker`) decides each logged query in shadow: the
production endpoint for a sampled share of the queries a small router answered
(`production_shadow_share`), and the registry's candidate in shadow for every query; the decisions go to
the store's `shadow_decisions` and never to the user, and their failures never fail a request.

Timestamps (the logged interaction's, the completion's `created`, the shadow decisions') come from `clock`
(default: now, UTC) and interaction ids from `new_interaction_id` (default: random): simulations pass their
own, so that a simulated week's timestamps and ids are the same in every run; nothing over HTTP sets them.

With an API key (`create_app(api_key=...)`, from the environment variable named by `serve.api_key_env`),
every /v1 route needs `Authorization: Bearer <key>`, as OpenAI clients send it; `flywheel serve` refuses to
bind beyond the loopback interface without one.

Errors come back in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`) and never carry
internals (SQL, tracebacks, paths; a 500 gives a reference to the service log): 400 a body that is not
valid JSON or holds text no store can keep as sent (a lone surrogate or NUL anywhere, including the
feedback comment), nested too deep, duplicate keys, NaN/Infinity; 401 a missing or wrong key; 404 unknown
interaction or path; 413 body over the limit; 415 a body declared as something other than JSON; 422 a
request that does not fit the schema; 502 the router's endpoint failed (the production model, or the
production model a cascade deferred the question to: never the student's answer below its threshold instead);
503 no router, or the log cannot take the request. The request's `model` is recorded as sent; any value is
accepted and the response and the log record name the model that actually routed (for a cascade, per
question: its student's name or the production model's; /health reports the cascade and its threshold).
"""

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

import openai
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from flywheel.core.config import PiiConfig
from flywheel.core.schema import Feedback
from flywheel.core.store import Store
from flywheel.serve.records import (
    UNROUTABLE,
    InteractionLog,
    LogUnavailable,
    RecordRejected,
    chat_completion,
    count_tokens,
    interaction_record,
    message_text,
    new_completion_id,
    pseudonym,
    unstorable,
    usage,
)
from flywheel.serve.routing import Decision, DeferralFailed, NoRouterAvailable, RouterProvider
from flywheel.serve.shadow import ShadowJob, ShadowWorker, utc

log = logging.getLogger("flywheel.serve")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024
MAX_JSON_DEPTH = 64  # an OpenAI request with tools is ~10 deep; deeper bodies are refused before any work
SESSION_HEADER = "x-flywheel-session"
DEFAULT_API_KEY_ENV = "FLYWHEEL_SERVE_API_KEY"


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


class UnsafeBind(RuntimeError):
    """Serving beyond the loopback interface without an API key."""


def _error_type(status: int) -> str:
    if status == 401:
        return "invalid_request_error"  # what OpenAI answers for a bad key
    if status == 404:
        return "not_found_error"
    if status == 503:
        return "service_unavailable"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _error_type(status), "param": param, "code": code}}


def error_response(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, param), status_code=status)


# --- who may bind where ------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether binding `host` exposes the service to this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_exposure(host: str, api_key: str | None, key_env: str = DEFAULT_API_KEY_ENV) -> None:
    """Refuse to serve beyond localhost without an API key."""
    if not api_key and not is_loopback(host):
        raise UnsafeBind(
            f"refusing to serve on {host!r} without an API key: anyone who reaches it could route and post "
            f"feedback. Set {key_env} (clients send it as `Authorization: Bearer <key>`, e.g. "
            "OpenAI(api_key=...)), or bind to 127.0.0.1."
        )


class _Guard:
    """Pure ASGI middleware: the API key on /v1 routes, and a 500 without internals for anything
    unexpected (the traceback goes to the service log under a reference id)."""

    def __init__(self, app: Any, api_key: str | None):
        self.app = app
        self.key = api_key.encode("utf-8") if api_key else None

    def _authorized(self, scope: dict[str, Any]) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.key is not None and scope["path"].startswith("/v1") and not self._authorized(scope):
            body = error_body(
                401,
                "missing or incorrect API key: send it as `Authorization: Bearer <key>`",
                "invalid_api_key",
            )
            response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        try:
            await self.app(scope, receive, send)
        except Exception:
            reference = uuid.uuid4().hex[:12]
            log.exception("unexpected error in the router service (reference %s)", reference)
            message = f"internal error (reference {reference}; the details are in the service log)"
            # the response had started already: the server closes the connection instead
            with contextlib.suppress(RuntimeError):
                await error_response(500, message, "internal_error")(scope, receive, send)


# --- request bodies ------------------------------------------------------------------------------


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The part of an OpenAI chat-completion request the router reads; other fields are kept and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(default=1, ge=1, le=1)
    user: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _has_a_question(self) -> "ChatRequest":
        users = [m for m in self.messages if m.role == "user"]
        if not users:
            raise ValueError("messages has no user message to route")
        if not message_text(users[-1].content).strip():
            raise ValueError("the last user message is empty")
        return self

    @property
    def question(self) -> str:
        return message_text([m for m in self.messages if m.role == "user"][-1].content)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interaction_id: str = Field(min_length=1, max_length=200)
    thumbs: Literal["up", "down"] | None = None
    rating: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=4000)


def _validation_message(err: ValidationError) -> tuple[str, str | None]:
    parts, first = [], None
    for e in err.errors()[:5]:
        where = ".".join(str(x) for x in e["loc"])
        first = first or where or None
        msg = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "invalid request: " + "; ".join(parts), first


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {duplicate!r}")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _check_body(data: Any) -> None:
    """Refuse bodies nested too deep and text no store can hold as sent, anywhere in the body (the whole
    request is logged). Iterative: a deep body cannot exhaust the stack here."""
    stack: list[tuple[Any, int, tuple]] = [(data, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels", "too_deep")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, path)
                stack.append((item, depth + 1, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, (*path, i)) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, path)


def _check_text(text: str, path: tuple) -> None:
    problem = unstorable(text)
    if problem:
        where = ".".join(map(str, path)) or None
        raise ApiError(400, f"{where or 'the body'}: text {problem}", "invalid_text", where)


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a checked JSON object, read at most `limit` bytes far."""
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media, _, params = content_type.partition(";")
        media = media.strip().lower()
        charset = params.partition("charset=")[2].strip().strip('"').lower()
        if not (media == "application/json" or media.endswith("+json")) or charset not in ("", "utf-8"):
            raise ApiError(
                415, f"request body must be JSON in UTF-8, not {content_type[:100]}", "bad_media_type"
            )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is over the {limit}-byte limit", "too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body is over the {limit}-byte limit", "too_large")
    try:
        data = json.loads(
            bytes(body).decode("utf-8-sig"),
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply", "too_deep") from None
    except UnicodeDecodeError as err:
        raise ApiError(400, f"request body is not valid UTF-8: {err.reason}", "invalid_json") from None
    except json.JSONDecodeError as err:
        raise ApiError(400, f"request body is not valid JSON: {err}", "invalid_json") from None
    except ValueError as err:  # duplicate keys, NaN, numbers out of range or with too many digits
        raise ApiError(400, f"request body is not valid JSON: {str(err)[:200]}", "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(
            422, f"request body must be a JSON object, got {type(data).__name__}", "invalid_request"
        )
    _check_body(data)
    return data


def _parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        message, param = _validation_message(err)
        raise ApiError(422, message, "invalid_request", param) from None


def _no_router(err: NoRouterAvailable) -> ApiError:
    if err.__cause__ is not None:  # a model that does not load: its path and error go to the log only
        log.error("router unavailable: %s", err)
        return ApiError(503, "the router model cannot be loaded; see the service log", "no_router")
    return ApiError(503, str(err), "no_router")


async def _logged(written: Awaitable[Any]) -> Any:
    """Wait until the writer committed a record (or refused it)."""
    try:
        return await written
    except RecordRejected as err:
        raise ApiError(422, f"the request cannot be logged: {err}", "invalid_request") from None
    except LogUnavailable:
        raise ApiError(
            503, "the request could not be logged, so it was not answered; retry later", "log_unavailable"
        ) from None


class _RouteBatcher:
    """Routes the questions waiting at the same moment in one `predict` call: a router decides a batch of
    32 in about the time it takes for one. The router in force is looked up once per batch, so a promotion
    takes effect with the next batch. Batches run on one thread of their own, so that a slow router (a
    causal LM, the production endpoint over HTTP) never stalls the event loop."""

    def __init__(self, provider: RouterProvider):
        self.provider = provider
        self.pending: list[tuple[str, asyncio.Future]] = []
        self.draining = False
        self.drain_task: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="flywheel-route")
        self.counts = {"batches": 0, "questions": 0}

    async def route(self, question: str) -> Decision:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((question, future))
        if not self.draining:
            self.draining = True
            self.drain_task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                await asyncio.sleep(0)  # let the requests read in this turn of the loop join the batch
                batch, self.pending = self.pending, []
                self.counts["batches"] += 1
                self.counts["questions"] += len(batch)
                try:
                    questions = [q for q, _ in batch]
                    decisions = await loop.run_in_executor(self.executor, self._decide, questions)
                except Exception as err:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(err)
                    continue
                for (_, future), decision in zip(batch, decisions, strict=True):
                    if future.done():
                        continue
                    if decision.error is not None:  # a cascade's deferral failed: this question only
                        future.set_exception(decision.error)
                    else:
                        future.set_result(decision)
        finally:
            self.draining = False

    def _decide(self, questions: list[str]) -> list[Decision]:
        return self.provider.get().decide(questions)


def create_app(
    store: Store,
    provider: RouterProvider,
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    source: str = "serve",
    pii: PiiConfig | None = None,
    api_key: str | None = None,
    production_shadow_share: float = 0.0,
    clock: Callable[[], datetime] | None = None,
    new_interaction_id: Callable[[], str] | None = None,
) -> FastAPI:
    """The service over a store and a router provider. `source` tags the logged interactions; `pii` is the
    config's `collect.pii` (default settings when None); with `api_key`, /v1 routes need it;
    `production_shadow_share` (`serve.production_shadow_share`) of the queries a small router answers are
    also decided by the production endpoint in shadow; `clock` and `new_interaction_id` (simulations, tests)
    date and name what is logged.
    `app.state.shadow` is the shadow worker (`flush()` waits until its decisions are written)."""
    interaction_log = InteractionLog(store, pii, source=source)
    batcher = _RouteBatcher(provider)
    shadows = ShadowWorker(store, provider, production_share=production_shadow_share, clock=clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        interaction_log.close()  # commit what is queued before the process ends
        shadows.close()  # then decide in shadow what was answered (its rows need the interactions)
        batcher.executor.shutdown(wait=False)

    app = FastAPI(
        title="flywheel router",
        description="OpenAI-compatible expert router",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.api_key_required = bool(api_key)
    app.state.interaction_log = interaction_log
    app.state.shadow = shadows
    app.add_middleware(_Guard, api_key=api_key)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.message, err.code, err.param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = f"{err.detail}: {request.method} {request.url.path}"
        return error_response(err.status_code, message, "http_error")

    @app.get("/health")
    def health() -> dict[str, Any]:
        counts = {
            "log": dict(interaction_log.counts),
            "routing": dict(batcher.counts),
            "shadow": shadows.describe(),
        }
        try:
            active = provider.get()
        except NoRouterAvailable as err:
            detail = _no_router(err).message
            return {"status": "no_router", "detail": detail, **counts}
        health = {"status": "ok", "model": active.name, "origin": active.origin, **counts}
        if active.cascade is not None:
            health["cascade"] = active.cascade.describe()
        return health

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        try:
            active = provider.get()
        except NoRouterAvailable:
            return {"object": "list", "data": []}
        model = {"id": active.name, "object": "model", "created": 0, "owned_by": f"flywheel-{active.origin}"}
        return {"object": "list", "data": [model]}

    # The two POST routes read their bodies themselves: plain Starlette routes skip FastAPI's
    # dependency solving on every request.
    async def chat_completions(request: Request) -> Any:
        started = time.perf_counter()
        data = await _read_json(request, max_request_bytes)
        chat = _parse(ChatRequest, data)
        if interaction_log.full():
            raise ApiError(503, "the service is overloaded; retry later", "overloaded")
        try:
            decision = await batcher.route(chat.question)
        except NoRouterAvailable as err:
            raise _no_router(err) from None
        except DeferralFailed as err:
            reference = uuid.uuid4().hex[:12]
            log.error("%s (reference %s)", err, reference, exc_info=err.__cause__)
            message = (
                f"the cascade {err.cascade} deferred this question to the production model {err.production} "
                f"(below its confidence threshold) and the production endpoint failed; retry later "
                f"(reference {reference})"
            )
            raise ApiError(502, message, "upstream_error") from None
        except openai.APIError:  # a router behind an endpoint (the production model) failed after its retries
            reference = uuid.uuid4().hex[:12]
            log.exception("the router's endpoint failed (reference %s)", reference)
            message = f"the router's upstream endpoint failed; retry later (reference {reference})"
            raise ApiError(502, message, "upstream_error") from None
        completion_id = new_interaction_id() if new_interaction_id is not None else new_completion_id()
        now = utc(clock()) if clock is not None else None
        prompt_tokens = sum(count_tokens(message_text(m.content)) for m in chat.messages)
        expert = decision.expert or UNROUTABLE
        answer = chat_completion(completion_id, decision.model, expert, prompt_tokens, created=now)
        latency_ms = 1000 * (time.perf_counter() - started)
        request_logged = dict(data)  # as sent
        session_header = request.headers.get(SESSION_HEADER)
        user_id = pseudonym(chat.user, "u") if chat.user else "anonymous"
        if chat.user:
            request_logged["user"] = user_id  # raw end-user ids never reach the store
        record = interaction_record(
            interaction_id=completion_id,
            request=request_logged,
            response=answer,
            routed_expert=expert,
            model=decision.model,  # who decided: for a cascade, its student or the production model
            latency_ms=latency_ms,
            ttft_ms=latency_ms if chat.stream else None,
            user_id=user_id,
            session_id=pseudonym(session_header, "s") if session_header else f"s-{completion_id}",
            timestamp=now,
        )
        await _logged(interaction_log.log_interaction(record))
        shadows.submit(ShadowJob(completion_id, chat.question, decision))  # after the commit: rows need it
        headers = {"X-Interaction-Id": completion_id}
        if not chat.stream:
            return JSONResponse(answer, headers=headers)
        include_usage = bool((chat.stream_options or {}).get("include_usage"))
        return StreamingResponse(_sse(answer, include_usage), media_type="text/event-stream", headers=headers)

    async def feedback(request: Request) -> JSONResponse:
        body = _parse(FeedbackRequest, await _read_json(request, max_request_bytes))
        try:
            signal = Feedback(thumbs=body.thumbs, rating=body.rating, comment=body.comment)
        except ValidationError as err:
            message, param = _validation_message(err)
            raise ApiError(422, message, "invalid_request", param) from None
        if interaction_log.full():
            raise ApiError(503, "the service is overloaded; retry later", "overloaded")
        found = await _logged(interaction_log.log_feedback(body.interaction_id, signal))
        if not found:
            raise ApiError(404, f"no interaction with id {body.interaction_id!r}", "unknown_interaction")
        return JSONResponse(
            {
                "object": "feedback",
                "interaction_id": body.interaction_id,
                **signal.model_dump(),
                "satisfied": signal.satisfied,
            }
        )

    app.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
    app.add_route("/v1/feedback", feedback, methods=["POST"])
    return app


def _sse(answer: dict[str, Any], include_usage: bool):
    """The answer as OpenAI stream chunks: the content, the finish reason, optionally usage, [DONE]."""
    base = {"id": answer["id"], "object": "chat.completion.chunk", "created": answer["created"]}
    base["model"] = answer["model"]
    content = answer["choices"][0]["message"]["content"]
    first = {"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": None}
    chunks = [
        {**base, "choices": [first]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    if include_usage:
        u = answer["usage"]
        chunks.append({**base, "choices": [], "usage": usage(u["prompt_tokens"], u["completion_tokens"])})
    for chunk in chunks:
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"
