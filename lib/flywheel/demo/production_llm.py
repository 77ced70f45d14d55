"""The simulated production LLM as an OpenAI-compatible service: the demo's stand-in for the 70B router.

    POST /v1/chat/completions   the expert the simulated 70B chose for the last user message's question
    GET  /v1/models             the one model it serves
    GET  /health                counts: answered (all answers), unknown (of those, questions not in the world)

It answers what the world's logs say production decided for that question, found by the text of the last
user message (whitespace collapsed and clipped as `core.prompts.RoutingPrompt` sends it, so the router
service's cascade and `core.routers.EndpointRouter` reach it with any system prompt). A question the world
never asked gets a deterministic hash-based expert and is counted as unknown. `usage` counts tokens as the
generator's logs do. Serve it with uvicorn (`flywheel.serve.runner.serve_in_thread` in tests).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flywheel.demo.generator import PRODUCTION_MODEL, token_counts
from flywheel.demo.weekly import WeeklyWorld, question_key

__all__ = ["production_app"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: the text ones, as OpenAI joins them
            return " ".join(str(part.get("text", "")) for part in self.content)
        return self.content or ""


class _ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[_Message] = Field(min_length=1)
    stream: bool | None = False


def _error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse({"error": error}, status_code=status)


def production_app(world: WeeklyWorld, model: str = PRODUCTION_MODEL, api_key: str | None = None) -> FastAPI:
    """The world's production LLM behind an OpenAI-compatible API; with `api_key`, /v1 routes need
    `Authorization: Bearer <api_key>`."""
    counts = {"answered": 0, "unknown": 0}  # async handlers on one event loop: no lock needed
    app = FastAPI(title="simulated production LLM", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.counts = counts
    app.state.api_key_required = bool(api_key)  # what serve_in_thread checks before a non-loopback bind

    def refused(request: Request) -> JSONResponse | None:
        if not api_key:
            return None
        sent = request.headers.get("authorization", "")
        if hmac.compare_digest(sent.encode(), f"Bearer {api_key}".encode()):
            return None
        return _error(401, "missing or wrong API key (Authorization: Bearer <key>)", "invalid_api_key")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model, "synthetic": True, **counts}

    @app.get("/v1/models", response_model=None)
    async def models(request: Request) -> Any:
        if (denied := refused(request)) is not None:
            return denied
        entry = {"id": model, "object": "model", "created": 0, "owned_by": "flywheel-demo"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Any:
        if (denied := refused(request)) is not None:
            return denied
        try:
            chat = _ChatRequest.model_validate(await request.json())
        except ValidationError as err:
            detail = err.errors()[0]
            where = ".".join(map(str, detail["loc"])) or None
            message = f"{where or 'body'}: {detail['msg']}"
            return _error(422, message, "invalid_request", where)
        except ValueError:  # not JSON (or not UTF-8)
            return _error(400, "the body is not valid JSON", "invalid_request")
        if chat.model != model:
            return _error(
                404,
                f"the model {chat.model!r} does not exist; this service serves {model!r}",
                "model_not_found",
                "model",
            )
        if chat.stream:
            return _error(400, "the simulated production LLM does not stream", "invalid_request", "stream")
        users = [m for m in chat.messages if m.role == "user"]
        if not users or not users[-1].text().strip():
            message = "messages has no non-empty user message to route"
            return _error(422, message, "invalid_request", "messages")
        question = users[-1].text()
        expert = world.production_answer(question)
        if expert is None:
            digest = hashlib.sha256(question_key(question).encode()).digest()
            expert = world.experts[int.from_bytes(digest[:8], "little") % len(world.experts)]
            counts["unknown"] += 1
        counts["answered"] += 1
        system = "\n".join(m.text() for m in chat.messages if m.role in ("system", "developer"))
        prompt_tokens, completion_tokens = token_counts(system, question, expert)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": expert},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    return app
