"""The interaction log record: one line per routed question, with the user's feedback.

The production router logs the OpenAI chat-completion request and response as sent and
received, plus the routing decision and its cost. Feedback may be inline or arrive later, in a
separate record joined by interaction id (`FeedbackRecord`). Records in the NVIDIA data-flywheel
blueprint's shape (`BlueprintRecord`) are mapped onto `Interaction`. `docs/log_schema.md` documents
all three; `parse_record` tells them apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_INT = 2**31 - 1  # token counts fit a 32-bit INTEGER column on every store backend


def _utc(value: datetime) -> datetime:
    """Timestamps without a zone are taken as UTC (as the demo and the blueprint log them)."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range in UTC") from None


class Feedback(BaseModel):
    """Explicit feedback: thumbs or a 1-5 rating, and an optional comment."""

    model_config = ConfigDict(extra="forbid")

    thumbs: Literal["up", "down"] | None = None
    rating: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _has_signal(self) -> Feedback:
        if self.thumbs is None and self.rating is None and not self.comment:
            raise ValueError("feedback carries no thumbs, rating or comment")
        return self

    @property
    def satisfied(self) -> bool | None:
        """Thumbs up or rating >= 4 is satisfied; a comment alone says nothing."""
        if self.thumbs is not None:
            return self.thumbs == "up"
        if self.rating is not None:
            return self.rating >= 4
        return None


class Interaction(BaseModel):
    """One routed question as logged by the production router."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=200)
    timestamp: datetime
    session_id: str = Field(min_length=1, max_length=200)
    user_id: str = Field(min_length=1, max_length=200)
    request: dict[str, Any]
    response: dict[str, Any]
    routed_expert: str = Field(min_length=1, max_length=100)
    model: str = Field(min_length=1, max_length=200)
    latency_ms: float | None = Field(ge=0)  # required key; null where the producer did not measure it
    ttft_ms: float | None = Field(default=None, ge=0)
    # null or absent: taken from response.usage, else estimated at ingestion (`tokens_estimated`)
    tokens_in: int | None = Field(default=None, ge=0, le=MAX_INT)
    tokens_out: int | None = Field(default=None, ge=0, le=MAX_INT)
    answer_excerpt: str | None = Field(default=None, max_length=4000)
    feedback: Feedback | None = None

    @field_validator("timestamp")
    @classmethod
    def _timestamp_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @model_validator(mode="before")
    @classmethod
    def _tokens_from_usage(cls, data: Any) -> Any:
        """Token counts left out of the record are read from the OpenAI response's `usage`, if it has one."""
        if isinstance(data, dict) and (data.get("tokens_in") is None or data.get("tokens_out") is None):
            prompt, completion = usage_tokens(data.get("response"))
            data = {**data}
            if data.get("tokens_in") is None:
                data["tokens_in"] = prompt
            if data.get("tokens_out") is None:
                data["tokens_out"] = completion
        return data

    @field_validator("request")
    @classmethod
    def _request_has_user_message(cls, request: dict[str, Any]) -> dict[str, Any]:
        check_messages(request.get("messages"))
        return request

    @property
    def query(self) -> str:
        """The last user message: the question that was routed."""
        return user_texts(self.request)[-1][1]

    @property
    def tokens_missing(self) -> bool:
        return self.tokens_in is None or self.tokens_out is None


class FeedbackRecord(BaseModel):
    """Feedback that arrives apart from the log, joined to its interaction by id (the newest wins)."""

    model_config = ConfigDict(extra="forbid")

    interaction_id: str = Field(min_length=1, max_length=200)
    timestamp: datetime
    thumbs: Literal["up", "down"] | None = None
    rating: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=4000)

    @field_validator("timestamp")
    @classmethod
    def _timestamp_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @property
    def feedback(self) -> Feedback:
        return Feedback(thumbs=self.thumbs, rating=self.rating, comment=self.comment)

    @model_validator(mode="after")
    def _has_signal(self) -> FeedbackRecord:
        self.feedback  # noqa: B018 - raises when there is no thumbs, rating or comment
        return self


class BlueprintRecord(BaseModel):
    """A record as the NVIDIA data-flywheel blueprint logs it: `timestamp` (Unix seconds or ISO),
    `workload_id`, `client_id`, and the OpenAI `request` and `response`. `to_interaction` maps it onto
    ours; the mapping is documented in docs/log_schema.md."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    timestamp: datetime
    workload_id: str = Field(min_length=1, max_length=200)
    client_id: str = Field(min_length=1, max_length=200)
    request: dict[str, Any]
    response: dict[str, Any]

    def to_interaction(self, digest: str) -> Interaction:
        """Raises pydantic.ValidationError (or ValueError) when the record cannot be mapped."""
        choices = self.response.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ValueError("response.choices must be a non-empty list")
        message = choices[0].get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str) or not content.strip():
            raise ValueError("response.choices[0].message.content (the routed expert) is empty")
        response_id = self.response.get("id")
        model = self.response.get("model") or self.request.get("model")
        return Interaction.model_validate(
            {
                "id": response_id if isinstance(response_id, str) and response_id else f"bp-{digest[:24]}",
                "timestamp": self.timestamp,
                "session_id": f"{self.client_id}/{self.workload_id}"[:200],
                "user_id": self.client_id,
                "request": self.request,
                "response": self.response,
                "routed_expert": content.strip().strip("\"'`.").strip(),
                "model": model,
                "latency_ms": None,
                "tokens_in": None,  # from response.usage, else estimated at ingestion
                "tokens_out": None,
            }
        )


def usage_tokens(response: Any) -> tuple[Any, Any]:
    """(prompt_tokens, completion_tokens) of an OpenAI response's `usage`; None where absent."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None, None
    return usage.get("prompt_tokens"), usage.get("completion_tokens")


def check_messages(messages: Any) -> None:
    """An OpenAI `messages` list as the workbench reads it: objects, at least one from the user, and every
    user message's content a string or a list of content parts (objects whose `text` is a string).
    Raises ValueError naming the first offending item."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("request.messages must be a non-empty list")
    has_user = False
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"request.messages[{i}] must be an object, got {_json_type(message)}")
        if message.get("role") != "user":
            continue
        has_user = True
        content = message.get("content", "")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            kind = _json_type(content)
            raise ValueError(f"request.messages[{i}].content must be a string or a list of parts, got {kind}")
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("text", ""), str):
                raise ValueError(f"request.messages[{i}].content[{j}] must be an object with a string text")
    if not has_user:
        raise ValueError("request.messages has no user message")


def user_texts(request: dict[str, Any]) -> list[tuple[int, str]]:
    """(message index, text) of each user message of a request that passed `check_messages`, in order;
    content parts are joined with spaces."""
    texts = []
    for i, message in enumerate(request["messages"]):
        if message.get("role") == "user":
            content = message.get("content", "")
            if isinstance(content, list):  # OpenAI content parts
                content = " ".join(p.get("text", "") for p in content)
            texts.append((i, content))
    return texts


def _json_type(value: Any) -> str:
    names = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string"}
    return names.get(type(value), "array" if isinstance(value, list) else type(value).__name__)


RecordKind = Literal["interaction", "feedback", "blueprint"]


def record_kind(obj: dict[str, Any]) -> RecordKind:
    """Which schema a parsed log object claims: feedback by `interaction_id`, the blueprint by
    `workload_id`/`client_id` without our `routed_expert`, otherwise an interaction."""
    if "interaction_id" in obj and "request" not in obj:
        return "feedback"
    if ("workload_id" in obj or "client_id" in obj) and "routed_expert" not in obj:
        return "blueprint"
    return "interaction"
