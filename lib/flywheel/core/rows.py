"""Store rows from log records: one row builder for everything that writes interactions to the store.

File ingestion (`flywheel.collect.ingest`), the router service and the feedback form (`flywheel.serve`)
all validate a record against the log schema (`flywheel.core.schema`) and turn it into a row here: the same
content hash, the same PII masking in batches, the same token estimates, so their traffic looks the same
downstream and no text reaches the store unmasked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from flywheel.core.pii import PiiMasker
from flywheel.core.schema import FeedbackRecord, Interaction
from flywheel.core.store import utcnow
from flywheel.core.tokens import estimate

_STORED = json.JSONEncoder(ensure_ascii=False, default=str)


def _stored_json(obj: dict[str, Any], from_text: bool) -> str:
    """The request or response as stored: orjson's compact JSON for records read from JSON text (JSON
    types only), json's otherwise (a Parquet row may hold dates or other types, written with `str`)."""
    if from_text:
        try:
            return orjson.dumps(obj).decode("utf-8")
        except orjson.JSONEncodeError:  # an integer beyond 64 bits, deep nesting
            pass
    return _STORED.encode(obj)


def content_hash(obj: dict[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def clean_text(text: str) -> str:
    """Text any store backend accepts (PostgreSQL takes no NUL, UTF-8 no lone surrogate)."""
    if text.isascii() and "\x00" not in text:  # the common case, without the round trip
        return text
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8").replace("\x00", "\\x00")


_DEFAULT_MASKER: PiiMasker | None = None


def default_masker() -> PiiMasker:
    global _DEFAULT_MASKER
    if _DEFAULT_MASKER is None:
        _DEFAULT_MASKER = PiiMasker()
    return _DEFAULT_MASKER


def mask_unique(masker: PiiMasker, texts: Sequence[str], names: bool = True) -> list[str]:
    """`masker.mask_many`, each distinct text once (answer excerpts, system-made text and retried questions
    repeat within a batch)."""
    unique = list(dict.fromkeys(texts))
    masked = dict(zip(unique, masker.mask_many(unique, names=names), strict=True))
    return [masked[text] for text in texts]


def message_parts(request: dict[str, Any], roles: tuple[str, ...] | None = None) -> list[str]:
    """The texts of the request's messages (of `roles`, default all), in order; a content-parts message
    gives one text per text part. The request passed `flywheel.core.schema.check_messages`."""
    texts = []
    for m in request["messages"]:
        if roles is None or m.get("role") in roles:
            content = m.get("content", "")
            if isinstance(content, list):
                texts.extend(p["text"] for p in content if "text" in p)
            elif isinstance(content, str):
                texts.append(content)
    return texts


def _with_message_parts(request: dict[str, Any], texts: Iterator[str]) -> tuple[dict[str, Any], str]:
    """A copy of the request whose message texts are replaced, in `message_parts` order, and its query
    (the last user message, content parts joined as `Interaction.query` joins them)."""
    messages, query = [], ""
    for m in request["messages"]:
        content = m.get("content", "")
        if isinstance(content, list):
            content = [{**p, "text": next(texts)} if "text" in p else p for p in content]
            text = " ".join(p.get("text", "") for p in content)
        elif isinstance(content, str):
            content = text = next(texts)
        else:
            text = ""
        if m.get("role") == "user":
            query = text
        messages.append({**m, "content": content} if "content" in m else m)
    return {**request, "messages": messages}, query


def _query(request: dict[str, Any]) -> str:
    """The last user message of a checked request, content parts joined as `Interaction.query` joins them."""
    for message in reversed(request["messages"]):
        if message.get("role") == "user":
            content = message.get("content", "")
            return " ".join(p.get("text", "") for p in content) if isinstance(content, list) else content
    return ""


def to_rows(
    records: Sequence[tuple[Interaction, str, str]],
    masker: PiiMasker | None = None,
    keep_original: bool = False,
    *,
    clean: bool = True,
    from_text: bool = False,
) -> list[dict[str, Any]]:
    """Store rows of validated interactions, given with their content hash and source. PII is masked in
    one batch: every message of the request (`query_masked` is the last user one), the comment, and the
    answer excerpt (patterns only: it is the system's own text). Unless `keep_original`, `query`,
    `request_json` and the excerpt hold the masked text too; the comment is always masked. Token counts
    the record lacks are estimated (`flywheel.core.tokens`) and flagged `tokens_estimated`.
    `clean=False` where every text is known to be storable already (ingestion's canonical JSON check: no
    NUL, no lone surrogate); `from_text` where every record was read from JSON text (see `_stored_json`)."""
    masker = masker or default_masker()
    fix = clean_text if clean else str
    parts = [message_parts(record.request) for record, *_ in records]
    texts: list[str] = []
    for record_parts, (record, *_) in zip(parts, records, strict=True):
        texts.extend(record_parts)
        texts.append(record.feedback.comment if record.feedback and record.feedback.comment else "")
    masked = mask_unique(masker, texts)
    excerpts = iter(mask_unique(masker, [r.answer_excerpt or "" for r, *_ in records], names=False))
    missing = [r for r, *_ in records if r.tokens_missing]
    if missing:
        estimates = iter(estimate([(r.request, r.response, r.routed_expert) for r in missing]))
    rows = []
    at = 0
    for record_parts, (record, digest, source) in zip(parts, records, strict=True):
        n = len(record_parts)
        masked_parts, comment = masked[at : at + n], masked[at + n]
        at += n + 1
        if masked_parts == record_parts:  # nothing to mask (most records): no copy
            masked_request, query_masked = record.request, _query(record.request)
        else:
            masked_request, query_masked = _with_message_parts(record.request, iter(masked_parts))
        excerpt = next(excerpts)
        tokens_in, tokens_out = next(estimates) if record.tokens_missing else (0, 0)
        request = record.request if keep_original else masked_request
        feedback = record.feedback
        rows.append(
            {
                "id": fix(record.id),
                "content_hash": digest,
                "timestamp": record.timestamp,
                "session_id": fix(record.session_id),
                "user_id": fix(record.user_id),
                "query": fix(_query(record.request) if keep_original else query_masked),
                "query_masked": fix(query_masked),
                "routed_expert": fix(record.routed_expert),
                "model": fix(record.model),
                "latency_ms": record.latency_ms,
                "ttft_ms": record.ttft_ms,
                "tokens_in": tokens_in if record.tokens_in is None else record.tokens_in,
                "tokens_out": tokens_out if record.tokens_out is None else record.tokens_out,
                "tokens_estimated": record.tokens_missing,
                "answer_excerpt": fix(record.answer_excerpt if keep_original else excerpt)
                if record.answer_excerpt is not None
                else None,
                "thumbs": feedback.thumbs if feedback else None,
                "rating": feedback.rating if feedback else None,
                "comment": fix(comment) if feedback and feedback.comment else None,
                "satisfied": feedback.satisfied if feedback else None,
                "request_json": fix(_stored_json(request, from_text)),
                "response_json": fix(_stored_json(record.response, from_text)),
                "source": fix(source),
                "ingested_at": utcnow(),
            }
        )
    return rows


def to_row(
    record: Interaction,
    digest: str,
    source: str,
    keep_original: bool = False,
    masker: PiiMasker | None = None,
) -> dict[str, Any]:
    """The store row of one validated interaction (PII masked with `masker`, else the default one)."""
    return to_rows([(record, digest, source)], masker, keep_original)[0]


def feedback_rows(
    records: Sequence[tuple[FeedbackRecord, str, str]], masker: PiiMasker
) -> list[dict[str, Any]]:
    """Store rows of separate feedback records (with content hash and source); comments masked in a batch."""
    comments = iter(mask_unique(masker, [r.comment or "" for r, _, _ in records]))
    rows = []
    for record, digest, source in records:
        fb, comment = record.feedback, next(comments)
        rows.append(
            {
                "content_hash": digest,
                "interaction_id": clean_text(record.interaction_id),
                "timestamp": record.timestamp,
                "thumbs": fb.thumbs,
                "rating": fb.rating,
                "comment": clean_text(comment) if fb.comment else None,
                "satisfied": fb.satisfied,
                "source": clean_text(source),
                "ingested_at": utcnow(),
                "applied": False,
            }
        )
    return rows


def feedback_row(record: FeedbackRecord, digest: str, source: str, masker: PiiMasker) -> dict[str, Any]:
    return feedback_rows([(record, digest, source)], masker)[0]
