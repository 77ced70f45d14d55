"""One routed question as a chat.completion object and as an interaction record in the log schema.

The service and the feedback form write what a production router would log (`flywheel.schema.Interaction`),
through the same validation and row builder as file ingestion (`flywheel.collect.ingest.to_row` and
`content_hash`): their traffic looks exactly like ingested traffic downstream.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from flywheel.collect.ingest import content_hash, to_row
from flywheel.schema import Feedback, Interaction
from flywheel.store import Store, interactions

_TOKEN = re.compile(r"\w+|[^\w\s]")
UNROUTABLE = "unknown"  # what is answered and logged when a router gives no expert


def count_tokens(text: str) -> int:
    """Approximate token count (words and punctuation): the routers here have no shared tokenizer."""
    return len(_TOKEN.findall(text))


def message_text(content: Any) -> str:
    """The text of an OpenAI message content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def pseudonym(value: str, prefix: str) -> str:
    """A stable pseudonym for a user or session identifier (raw identifiers are never stored)."""
    return f"{prefix}-{hashlib.sha256(value.encode('utf-8')).hexdigest()[:12]}"


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(completion_id: str, model: str, content: str, prompt_tokens: int) -> dict[str, Any]:
    """An OpenAI chat.completion response whose assistant message is the routed expert's name."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage(prompt_tokens, count_tokens(content)),
        "system_fingerprint": None,
    }


def interaction_record(
    *,
    interaction_id: str,
    request: dict[str, Any],
    response: dict[str, Any],
    routed_expert: str,
    model: str,
    latency_ms: float,
    user_id: str,
    session_id: str,
    ttft_ms: float | None = None,
    feedback: dict[str, Any] | None = None,
    answer_excerpt: str | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """A log line in the documented schema (the shape `flywheel ingest` reads)."""
    return {
        "id": interaction_id,
        "timestamp": (timestamp or datetime.now(UTC)).isoformat(),
        "session_id": session_id,
        "user_id": user_id,
        "request": request,
        "response": response,
        "routed_expert": routed_expert,
        "model": model,
        "latency_ms": round(latency_ms, 3),
        "ttft_ms": None if ttft_ms is None else round(ttft_ms, 3),
        "tokens_in": response["usage"]["prompt_tokens"],
        "tokens_out": response["usage"]["completion_tokens"],
        "answer_excerpt": answer_excerpt,
        "feedback": feedback,
    }


def store_interaction(store: Store, record: dict[str, Any], source: str) -> Interaction:
    """Validate a record against the log schema and store it as ingestion would; returns the validated
    interaction. Raises pydantic.ValidationError for a record that ingestion would quarantine."""
    interaction = Interaction.model_validate(record)
    store.add_interactions([to_row(interaction, content_hash(record), source)])
    return interaction


def warm_up() -> None:
    """Build (not store) one row, so that whatever the row builder loads lazily (the PII masker's NER
    model) is loaded before the first real request rather than during it."""
    request = {"model": "warm-up", "messages": [{"role": "user", "content": "Warm up for Dana Smith"}]}
    response = chat_completion("chatcmpl-warm-up", "warm-up", UNROUTABLE, 1)
    record = interaction_record(
        interaction_id="warm-up",
        request=request,
        response=response,
        routed_expert=UNROUTABLE,
        model="warm-up",
        latency_ms=0.0,
        user_id="warm-up",
        session_id="warm-up",
    )
    to_row(Interaction.model_validate(record), content_hash(record), "warm-up")


def record_feedback(store: Store, interaction_id: str, feedback: Feedback) -> bool:
    """Set the explicit feedback of a stored interaction (the latest word wins); False for an unknown id."""
    values = {
        "thumbs": feedback.thumbs,
        "rating": feedback.rating,
        "comment": feedback.comment,
        "satisfied": feedback.satisfied,
    }
    with store.engine.begin() as conn:
        result = conn.execute(
            sa.update(interactions).where(interactions.c.id == interaction_id).values(values)
        )
    return result.rowcount > 0


def stored_interaction(store: Store, interaction_id: str) -> dict[str, Any] | None:
    """The stored row of one interaction, or None."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(interactions).where(interactions.c.id == interaction_id)).first()
    return dict(row._mapping) if row is not None else None
