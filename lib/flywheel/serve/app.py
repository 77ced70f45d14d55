"""The OpenAI-compatible router service (FastAPI).

    GET  /v1/models              the router in force (an empty list when there is none)
    POST /v1/chat/completions    route the last user message; the assistant message is the expert's name
    POST /v1/feedback            {interaction_id, thumbs | rating, comment} for an earlier answer
    GET  /health                 liveness and the router in force

Every answered question is logged to the store as an interaction in the documented log schema, with the
measured latency; the interaction id is the completion id (`completion.id`, also the `X-Interaction-Id`
header), which is what feedback refers to. Errors come back in OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`): 400 unreadable JSON, 404 unknown interaction or path,
413 body over the limit, 422 a request that does not fit the schema, 503 no router. The request's `model`
is recorded as sent; any value is accepted and the response names the model that actually routed.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from flywheel.schema import Feedback
from flywheel.serve.records import (
    UNROUTABLE,
    chat_completion,
    count_tokens,
    interaction_record,
    message_text,
    new_completion_id,
    pseudonym,
    record_feedback,
    store_interaction,
    usage,
)
from flywheel.serve.routing import NoRouterAvailable, RouterProvider
from flywheel.store import Store

log = logging.getLogger("flywheel.serve")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024
SESSION_HEADER = "x-flywheel-session"


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def _error_type(status: int) -> str:
    if status == 404:
        return "not_found_error"
    if status == 503:
        return "service_unavailable"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_response(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": _error_type(status), "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


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
    def _has_a_question(self) -> ChatRequest:
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


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, read at most `limit` bytes far."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is over the {limit}-byte limit", "too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body is over the {limit}-byte limit", "too_large")
    try:
        data = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, f"request body is not valid JSON: {err}", "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(
            422, f"request body must be a JSON object, got {type(data).__name__}", "invalid_request"
        )
    return data


def _parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        message, param = _validation_message(err)
        raise ApiError(422, message, "invalid_request", param) from None


def create_app(
    store: Store,
    provider: RouterProvider,
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    source: str = "serve",
) -> FastAPI:
    """The service over a store and a router provider; `source` tags the logged interactions."""
    app = FastAPI(title="flywheel router", description="OpenAI-compatible expert router", docs_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.message, err.code, err.param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = f"{err.detail}: {request.method} {request.url.path}"
        return error_response(err.status_code, message, "http_error")

    @app.middleware("http")
    async def _never_crash(request: Request, call_next: Any) -> Any:
        """Anything unexpected becomes a 500 in OpenAI's shape; the service keeps serving."""
        try:
            return await call_next(request)
        except Exception as err:
            log.exception("unexpected error in the router service")
            return error_response(500, f"internal error: {type(err).__name__}: {err}", "internal_error")

    @app.get("/health")
    def health() -> dict[str, Any]:
        try:
            active = provider.get()
        except NoRouterAvailable as err:
            return {"status": "no_router", "detail": str(err)}
        return {
            "status": "ok",
            "model": active.name,
            "origin": active.origin,
            "artifact": active.artifact_path,
        }

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        try:
            active = provider.get()
        except NoRouterAvailable:
            return {"object": "list", "data": []}
        model = {"id": active.name, "object": "model", "created": 0, "owned_by": f"flywheel-{active.origin}"}
        return {"object": "list", "data": [model]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        started = time.perf_counter()
        data = await _read_json(request, max_request_bytes)
        chat = _parse(ChatRequest, data)
        session_header = request.headers.get(SESSION_HEADER)
        answer = await run_in_threadpool(_answer, chat, data, session_header, started)
        headers = {"X-Interaction-Id": answer["id"]}
        if not chat.stream:
            return JSONResponse(answer, headers=headers)
        include_usage = bool((chat.stream_options or {}).get("include_usage"))
        return StreamingResponse(_sse(answer, include_usage), media_type="text/event-stream", headers=headers)

    def _answer(
        chat: ChatRequest, data: dict[str, Any], session_header: str | None, started: float
    ) -> dict[str, Any]:
        try:
            active = provider.get()
        except NoRouterAvailable as err:
            raise ApiError(503, str(err), "no_router") from None
        question = chat.question
        expert = active.route(question) or UNROUTABLE
        completion_id = new_completion_id()
        prompt_tokens = sum(count_tokens(message_text(m.content)) for m in chat.messages)
        response = chat_completion(completion_id, active.name, expert, prompt_tokens)
        latency_ms = 1000 * (time.perf_counter() - started)
        request_logged = dict(data)  # as sent
        user_id = pseudonym(chat.user, "u") if chat.user else "anonymous"
        if chat.user:
            request_logged["user"] = user_id  # raw end-user ids never reach the store
        record = interaction_record(
            interaction_id=completion_id,
            request=request_logged,
            response=response,
            routed_expert=expert,
            model=active.name,
            latency_ms=latency_ms,
            ttft_ms=latency_ms if chat.stream else None,
            user_id=user_id,
            session_id=pseudonym(session_header, "s") if session_header else f"s-{completion_id}",
        )
        try:
            store_interaction(store, record, source)
        except Exception:  # the answer still goes out; a store outage must not take routing down
            log.exception("could not log interaction %s to the store", completion_id)
        return response

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> JSONResponse:
        body = _parse(FeedbackRequest, await _read_json(request, max_request_bytes))
        try:
            signal = Feedback(thumbs=body.thumbs, rating=body.rating, comment=body.comment)
        except ValidationError as err:
            message, param = _validation_message(err)
            raise ApiError(422, message, "invalid_request", param) from None
        found = await run_in_threadpool(record_feedback, store, body.interaction_id, signal)
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
