"""One routed question as a chat.completion object and as an interaction record in the log schema, and the
service's one writer that puts those records into the store.

The service and the feedback form write what a production router would log (`core.schema.Interaction`),
through the same validation, PII masker and row builder as file ingestion (`flywheel.core.rows.to_rows`,
masking with `PiiMasker.from_config(config.collect.pii)`): their traffic looks exactly like ingested traffic
downstream, and no text reaches the store unmasked.

`InteractionLog` is the service's single writer: request handlers hand it records and feedback and wait
until the batch holding theirs is committed; one thread masks each batch in one pass and commits it in one
transaction, retrying while the store is locked or unreachable (an ingest writing the same SQLite file).
A handler answers only after its record is committed, so every answered request is logged exactly once; a
record the writer cannot commit within `give_up_s` fails its request (503) instead of being dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from flywheel.core.config import PiiConfig
from flywheel.core.pii import PiiMasker
from flywheel.core.rows import content_hash, to_rows
from flywheel.core.schema import Feedback, Interaction
from flywheel.core.store import Store, interactions

log = logging.getLogger("flywheel.serve")

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


def unstorable(text: str) -> str | None:
    """Why no store can hold this text exactly as sent (a lone surrogate, a NUL), or None. The service
    refuses such requests with 400 rather than altering what it logs."""
    if "\x00" in text:
        return "contains a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (invalid Unicode)"
    return None


def pseudonym(value: str, prefix: str) -> str:
    """A stable pseudonym for a user or session identifier (raw identifiers are never stored)."""
    return f"{prefix}-{hashlib.sha256(value.encode('utf-8', errors='surrogatepass')).hexdigest()[:12]}"


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    completion_id: str, model: str, content: str, prompt_tokens: int, created: datetime | None = None
) -> dict[str, Any]:
    """An OpenAI chat.completion response whose assistant message is the routed expert's name, `created`
    at that time (default: now)."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(created.timestamp()) if created is not None else int(time.time()),
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


# --- writing to the store --------------------------------------------------------------------------


def next_batch(jobs: queue.Queue, max_batch: int) -> tuple[list, bool]:
    """A worker thread's next batch: the first job (waiting for it), then whatever else is queued, up to
    `max_batch`; `None` in the queue means stop. Returns (batch, stop)."""
    job = jobs.get()
    if job is None:
        return [], True
    batch = [job]
    while len(batch) < max_batch:
        try:
            more = jobs.get_nowait()
        except queue.Empty:
            break
        if more is None:
            return batch, True
        batch.append(more)
    return batch, False


class RecordRejected(ValueError):
    """A record the log schema refuses: its request is refused (422) and nothing is stored."""


class LogUnavailable(RuntimeError):
    """The store did not take a record in time: its request is refused (503) and nothing was stored."""


def _retryable(err: BaseException) -> bool:
    """A store error that may pass: SQLite busy/locked, a dropped or restarting PostgreSQL connection."""
    if isinstance(err, sa.exc.OperationalError):
        return True
    return isinstance(err, sa.exc.DBAPIError) and err.connection_invalidated


def with_retries(write: Callable[[], Any], give_up_s: float, on_retry: Callable[[], None] = lambda: None):
    """Run a store write, retrying with backoff while the store is locked or unreachable."""
    deadline = time.monotonic() + give_up_s
    pause = 0.02
    while True:
        try:
            return write()
        except sa.exc.DBAPIError as err:
            if not _retryable(err) or time.monotonic() + pause > deadline:
                raise
            log.warning("store busy or unreachable, retrying in %.2f s: %s", pause, err.orig)
            on_retry()
            time.sleep(pause)
            pause = min(2 * pause, 1.0)


def _masker(pii: PiiConfig | None) -> tuple[PiiMasker, bool]:
    pii = pii or PiiConfig()
    return PiiMasker.from_config(pii), pii.keep_original


def _interaction_rows(
    records: Sequence[dict[str, Any]], source: str, masker: PiiMasker, keep_original: bool
) -> list[dict[str, Any] | Exception]:
    """Store rows of records, masked in one batch; a record that fails becomes its exception instead."""
    validated: list[tuple[Interaction, str, str] | Exception] = []
    for record in records:
        try:
            validated.append((Interaction.model_validate(record), content_hash(record), source))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "record"
            validated.append(RecordRejected(f"the log schema refuses it: {where}: {first['msg']}"))
    good = [v for v in validated if not isinstance(v, Exception)]
    try:
        rows = iter(to_rows(good, masker, keep_original))
    except Exception:  # one text the masker cannot take must not sink the batch: mask one by one
        log.exception("masking a batch failed; masking its records one by one")
        rows = iter(_one_by_one(good, masker, keep_original))
    return [v if isinstance(v, Exception) else next(rows) for v in validated]


def _one_by_one(good, masker: PiiMasker, keep_original: bool) -> list[dict[str, Any] | Exception]:
    out: list[dict[str, Any] | Exception] = []
    for item in good:
        try:
            out.append(to_rows([item], masker, keep_original)[0])
        except Exception as err:
            log.exception("could not mask interaction %s", item[0].id)
            out.append(RecordRejected(f"its text could not be PII-masked ({type(err).__name__})"))
    return out


def _insert(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        store.add_interactions(rows)  # ON CONFLICT DO NOTHING: a retried batch stores nothing twice


def _update_feedback(store: Store, updates: Sequence[tuple[str, dict[str, Any]]]) -> list[bool]:
    found = []
    with store.engine.begin() as conn:
        for interaction_id, values in updates:
            result = conn.execute(
                sa.update(interactions).where(interactions.c.id == interaction_id).values(values)
            )
            found.append(result.rowcount > 0)
    return found


def _feedback_values(feedback: Feedback, masked_comment: str | None) -> dict[str, Any]:
    return {
        "thumbs": feedback.thumbs,
        "rating": feedback.rating,
        "comment": masked_comment,
        "satisfied": feedback.satisfied,
    }


def store_interaction(
    store: Store,
    record: dict[str, Any],
    source: str,
    pii: PiiConfig | None = None,
    give_up_s: float = 60.0,
) -> Interaction:
    """Validate a record against the log schema, mask it with the config's masker and store it as ingestion
    would (retrying while the store is busy); returns the validated interaction. Raises RecordRejected for
    a record that ingestion would quarantine."""
    masker, keep_original = _masker(pii)
    (row,) = _interaction_rows([record], source, masker, keep_original)
    if isinstance(row, Exception):
        raise row
    with_retries(lambda: _insert(store, [row]), give_up_s)
    return Interaction.model_validate(record)


def record_feedback(
    store: Store, interaction_id: str, feedback: Feedback, pii: PiiConfig | None = None
) -> bool:
    """Set the explicit feedback of a stored interaction (the latest word wins; the comment PII-masked);
    False for an unknown id."""
    masker, _ = _masker(pii)
    comment = masker.mask(feedback.comment) if feedback.comment else None
    updates = [(interaction_id, _feedback_values(feedback, comment))]
    return with_retries(lambda: _update_feedback(store, updates), 60.0)[0]


@dataclass(slots=True)
class _Job:
    kind: str  # "interaction" (payload: a record) or "feedback" (payload: (interaction id, Feedback))
    payload: Any
    future: Any  # an asyncio.Future, settled on `loop`, or a concurrent.futures.Future
    loop: asyncio.AbstractEventLoop | None = None
    outcome: tuple[Any, Exception | None] | None = None  # (result, error) once written


class InteractionLog:
    """The service's one writer (see the module docstring). Thread-safe; the thread starts on first use.
    Handlers await `log_interaction` / `log_feedback`; the writer wakes each event loop once per batch."""

    def __init__(
        self,
        store: Store,
        pii: PiiConfig | None = None,
        *,
        source: str = "serve",
        max_batch: int = 512,
        max_pending: int = 20_000,
        give_up_s: float = 120.0,
    ):
        self.store, self.source = store, source
        self.masker, self.keep_original = _masker(pii)
        self.max_batch, self.max_pending, self.give_up_s = max_batch, max_pending, give_up_s
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.counts = {"pending": 0, "committed": 0, "refused": 0, "store_retries": 0, "batches": 0}

    # --- the handlers' side ------------------------------------------------------------------------
    def full(self) -> bool:
        """Too many records wait already: refuse new requests (503) rather than queue without bound."""
        return self.counts["pending"] >= self.max_pending

    async def log_interaction(self, record: dict[str, Any]) -> str:
        """Return once the record is committed (its id); raises RecordRejected or LogUnavailable."""
        return await self._await(_Job("interaction", record, None))

    async def log_feedback(self, interaction_id: str, feedback: Feedback) -> bool:
        """Return once the feedback is committed: False for an unknown interaction id."""
        return await self._await(_Job("feedback", (interaction_id, feedback), None))

    def submit_interaction(self, record: dict[str, Any]) -> Future:
        """The same from a thread: a future that resolves once the record is committed."""
        job = _Job("interaction", record, Future())
        self._submit(job)
        return job.future

    async def _await(self, job: _Job) -> Any:
        job.loop = asyncio.get_running_loop()
        job.future = job.loop.create_future()
        self._submit(job)
        return await job.future

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="flywheel-log-writer", daemon=True)
                self._thread.start()
            self.counts["pending"] += 1
        self._queue.put(job)

    def close(self, timeout: float = 60.0) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    # --- the writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = next_batch(self._queue, self.max_batch)
            if not batch:
                return
            try:
                self._write(batch)
            except Exception as err:  # never leave a handler waiting
                log.exception("the interaction log could not write a batch")
                for j in batch:
                    if j.outcome is None:
                        j.outcome = (None, LogUnavailable(f"not logged ({type(err).__name__})"))
            self._deliver(batch)

    def _deliver(self, batch: list[_Job]) -> None:
        """Hand each job its outcome: one wake-up per event loop for the whole batch."""
        refused = sum(1 for j in batch if j.outcome[1] is not None)
        with self._lock:
            self.counts["pending"] -= len(batch)
            self.counts["committed"] += len(batch) - refused
            self.counts["refused"] += refused
        by_loop: dict[Any, list[_Job]] = {}
        for job in batch:
            if job.loop is None:
                _resolve([job])
            else:
                by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, jobs)

    def _retried(self) -> None:
        with self._lock:
            self.counts["store_retries"] += 1

    def _write(self, batch: list[_Job]) -> None:
        self.counts["batches"] += 1
        records = [j for j in batch if j.kind == "interaction"]
        feedback = [j for j in batch if j.kind == "feedback"]
        if records:
            rows = _interaction_rows(
                [j.payload for j in records], self.source, self.masker, self.keep_original
            )
            ready = []
            for job, row in zip(records, rows, strict=True):
                if isinstance(row, Exception):
                    job.outcome = (None, row)
                else:
                    ready.append((job, row))
            self._commit(ready, lambda rows: _insert(self.store, rows), lambda job, _: job.payload["id"])
        if feedback:
            updates = []
            for job in feedback:
                interaction_id, signal = job.payload
                try:
                    comment = self.masker.mask(signal.comment) if signal.comment else None
                except Exception as err:
                    log.exception("could not mask a feedback comment")
                    job.outcome = (None, RecordRejected(f"its comment could not be PII-masked ({err!r})"))
                    continue
                updates.append((job, (interaction_id, _feedback_values(signal, comment))))
            self._commit(updates, lambda ups: _update_feedback(self.store, ups), lambda _, found: found)

    def _commit(self, items, write, result) -> None:
        """Write the payloads of (job, payload) items in one transaction, retrying while the store is busy;
        when the batch fails otherwise, write its items one by one so one bad item fails alone."""
        if not items:
            return
        payloads = [payload for _, payload in items]
        try:
            outcome = with_retries(lambda: write(payloads), self.give_up_s, self._retried)
        except Exception as err:
            if len(items) > 1 and not _retryable(err):
                for item in items:
                    self._commit([item], write, result)
                return
            log.error("could not log %d item(s): %s", len(items), err)
            for job, _ in items:
                job.outcome = (None, LogUnavailable("the store did not take the record"))
            return
        outcomes = outcome if isinstance(outcome, list) else [None] * len(items)
        for (job, _), out in zip(items, outcomes, strict=True):
            job.outcome = (result(job, out), None)


def _resolve(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():  # its request was cancelled (the client went away)
            continue
        result, error = job.outcome
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)


def warm_up(pii: PiiConfig | None = None) -> None:
    """Mask one text with a name in it, so that the PII masker's NER model is loaded before the first real
    request rather than during it."""
    masker, _ = _masker(pii)
    masker.mask_many(["Warm up for Dana Smith"])


def stored_interaction(store: Store, interaction_id: str) -> dict[str, Any] | None:
    """The stored row of one interaction, or None."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(interactions).where(interactions.c.id == interaction_id)).first()
    return dict(row._mapping) if row is not None else None
