"""The interaction log record: one line per routed question, with the user's feedback.

The production router logs the OpenAI chat-completion request and response as sent and
received, plus the routing decision and its cost. Feedback may be inline or arrive later.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CAUSES = ("routing", "retrieval", "generation", "out_of_scope", "other")


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

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    timestamp: datetime
    session_id: str = Field(min_length=1, max_length=200)
    user_id: str = Field(min_length=1, max_length=200)
    request: dict[str, Any]
    response: dict[str, Any]
    routed_expert: str = Field(min_length=1, max_length=100)
    model: str = Field(min_length=1, max_length=200)
    latency_ms: float = Field(ge=0)
    ttft_ms: float | None = Field(default=None, ge=0)
    tokens_in: int = Field(ge=0)
    tokens_out: int = Field(ge=0)
    answer_excerpt: str | None = Field(default=None, max_length=4000)
    feedback: Feedback | None = None

    @field_validator("request")
    @classmethod
    def _request_has_user_message(cls, request: dict[str, Any]) -> dict[str, Any]:
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("request.messages must be a non-empty list")
        if not any(isinstance(m, dict) and m.get("role") == "user" for m in messages):
            raise ValueError("request.messages has no user message")
        return request

    @property
    def query(self) -> str:
        """The last user message: the question that was routed."""
        user_messages = [m for m in self.request["messages"] if m.get("role") == "user"]
        content = user_messages[-1].get("content", "")
        if isinstance(content, list):  # OpenAI content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content)
