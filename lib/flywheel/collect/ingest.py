"""Streaming ingestion of interaction logs into the store.

Reads JSONL and Parquet files (or folders of them) record by record, validates each against the log
schema (`flywheel.schema`: our `Interaction`, a separate `FeedbackRecord`, or the NVIDIA blueprint's
`BlueprintRecord`), masks PII in batches and writes each batch in one transaction: memory stays flat
whatever the file size. Every record read ends up counted exactly once: accepted, duplicate, or
quarantined with a reason. A killed ingest leaves whole batches only; running it again completes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm.auto import tqdm

from flywheel.collect.pii import PiiMasker
from flywheel.schema import BlueprintRecord, FeedbackRecord, Interaction, record_kind
from flywheel.store import Store, utcnow

BATCH_SIZE = 1000
RAW_KEEP_CHARS = 2000  # quarantine keeps the start of a bad record, enough to see what went wrong
MAX_RECORD_BYTES = 8 * 1024 * 1024  # a longer line is quarantined unread: memory stays bounded
SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass
class IngestReport:
    read: int = 0
    accepted: int = 0  # new interactions plus new separate feedback records
    duplicates: int = 0
    quarantined: int = 0
    feedback: int = 0  # of `accepted`: separate feedback records
    feedback_joined: int = 0  # interactions whose feedback a separate record set

    def reconciles(self) -> bool:
        return self.read == self.accepted + self.duplicates + self.quarantined

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def log_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into their log files (sorted); a missing path is an error, not a silent skip."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"log path does not exist: {path}")
    return files


def _lines(f) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) per physical line; None for a line longer than MAX_RECORD_BYTES, which is
    skipped in chunks without being held in memory."""
    line = 0
    while True:
        chunk = f.readline(MAX_RECORD_BYTES + 1)
        if not chunk:
            return
        line += 1
        if len(chunk) > MAX_RECORD_BYTES and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):
                chunk = f.readline(MAX_RECORD_BYTES)
            yield line, None
            continue
        yield line, chunk


def _records(path: Path) -> Iterator[tuple[int, str | None, dict[str, Any] | None, str | None]]:
    """Yield (line, raw text, parsed object or None, parse error or None), one record at a time."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        line = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_SIZE):
            for row in batch.to_pylist():
                line += 1
                yield line, None, row, None
        return
    with open(path, "rb") as f:
        for line, raw_bytes in _lines(f):
            if raw_bytes is None:
                yield line, "", None, f"record longer than {MAX_RECORD_BYTES} bytes"
                continue
            if not raw_bytes.strip():
                continue
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as err:
                yield line, raw_bytes.decode("utf-8", errors="replace"), None, f"invalid UTF-8: {err.reason}"
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as err:
                yield line, raw, None, f"invalid JSON: {err.msg} at column {err.colno}"
                continue
            except RecursionError:
                yield line, raw, None, "invalid JSON: nested too deeply"
                continue
            if not isinstance(obj, dict):
                yield line, raw, None, f"a record must be a JSON object, got {type(obj).__name__}"
                continue
            yield line, raw, obj, None


def _canonical(obj: dict[str, Any]) -> bytes:
    """The record as canonical JSON bytes. Raises ValueError on text no store can hold."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("invalid Unicode: a lone surrogate in a string") from None
    if b"\\u0000" in data:
        raise ValueError("a NUL character in a string")
    return data


def content_hash(obj: dict[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def _clean(text: str) -> str:
    """Text any store backend accepts (PostgreSQL takes no NUL, UTF-8 no lone surrogate)."""
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _validation_reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(x) for x in e["loc"]) or "record"
        parts.append(f"{where}: {e['msg']}")
    return "schema: " + "; ".join(parts)


_DEFAULT_MASKER: PiiMasker | None = None


def default_masker() -> PiiMasker:
    global _DEFAULT_MASKER
    if _DEFAULT_MASKER is None:
        _DEFAULT_MASKER = PiiMasker()
    return _DEFAULT_MASKER


def _message_texts(request: dict[str, Any]) -> list[str]:
    """The texts of the user messages, in order (a content-parts message gives one text per part)."""
    texts = []
    for m in request.get("messages", []):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content", "")
            if isinstance(content, list):
                texts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
            else:
                texts.append(str(content))
    return texts


def _with_message_texts(request: dict[str, Any], texts: Iterator[str]) -> dict[str, Any]:
    """A copy of the request whose user message texts are replaced, in `_message_texts` order."""
    messages = []
    for m in request.get("messages", []):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content", "")
            if isinstance(content, list):
                content = [{**p, "text": next(texts)} if isinstance(p, dict) else p for p in content]
            else:
                content = next(texts)
            m = {**m, "content": content}
        messages.append(m)
    return {**request, "messages": messages}


def _query(request: dict[str, Any]) -> str:
    """The last user message, as `Interaction.query` reads it."""
    return Interaction.model_construct(request=request).query


def to_rows(
    records: list[tuple[Interaction, str, str]], masker: PiiMasker | None = None, keep_original: bool = False
) -> list[dict[str, Any]]:
    """Store rows of validated interactions, given with their content hash and source. PII is masked in
    one batch: the user messages of the request (`query_masked` is the last one), the comment, and the
    answer excerpt (patterns only: it is the system's own text). Unless `keep_original`, `query`,
    `request_json` and the excerpt hold the masked text too; the comment is always masked."""
    masker = masker or default_masker()
    texts: list[str] = []
    for record, _, _ in records:
        texts.extend(_message_texts(record.request))
        texts.append(record.feedback.comment if record.feedback and record.feedback.comment else "")
    masked = iter(masker.mask_many(texts))
    excerpts = iter(masker.mask_many([r.answer_excerpt or "" for r, _, _ in records], names=False))
    rows = []
    for record, digest, source in records:
        masked_request = _with_message_texts(record.request, masked)
        query_masked = _query(masked_request)
        comment, excerpt = next(masked), next(excerpts)
        request = record.request if keep_original else masked_request
        feedback = record.feedback
        rows.append(
            {
                "id": _clean(record.id),
                "content_hash": digest,
                "timestamp": record.timestamp,
                "session_id": _clean(record.session_id),
                "user_id": _clean(record.user_id),
                "query": _clean(record.query if keep_original else query_masked),
                "query_masked": _clean(query_masked),
                "routed_expert": _clean(record.routed_expert),
                "model": _clean(record.model),
                "latency_ms": record.latency_ms,
                "ttft_ms": record.ttft_ms,
                "tokens_in": record.tokens_in,
                "tokens_out": record.tokens_out,
                "answer_excerpt": _clean(record.answer_excerpt if keep_original else excerpt)
                if record.answer_excerpt is not None
                else None,
                "thumbs": feedback.thumbs if feedback else None,
                "rating": feedback.rating if feedback else None,
                "comment": _clean(comment) if feedback and feedback.comment else None,
                "satisfied": feedback.satisfied if feedback else None,
                "request_json": json.dumps(request, ensure_ascii=False),
                "response_json": json.dumps(record.response, ensure_ascii=False),
                "source": _clean(source),
                "ingested_at": utcnow(),
            }
        )
    return rows


def to_row(record: Interaction, digest: str, source: str, keep_original: bool = False) -> dict[str, Any]:
    """The store row of one validated interaction (PII masked with the default masker)."""
    return to_rows([(record, digest, source)], keep_original=keep_original)[0]


def feedback_row(record: FeedbackRecord, digest: str, source: str, masker: PiiMasker) -> dict[str, Any]:
    fb = record.feedback
    return {
        "content_hash": digest,
        "interaction_id": _clean(record.interaction_id),
        "timestamp": record.timestamp,
        "thumbs": fb.thumbs,
        "rating": fb.rating,
        "comment": _clean(masker.mask(fb.comment)) if fb.comment else None,
        "satisfied": fb.satisfied,
        "source": _clean(source),
        "ingested_at": utcnow(),
        "applied": False,
    }


def ingest(
    store: Store,
    paths: Iterable[str | Path],
    progress: bool = True,
    masker: PiiMasker | None = None,
    keep_original: bool = False,
) -> IngestReport:
    """Ingest log files into the store; re-ingesting the same records adds nothing. `masker` and
    `keep_original` come from the config's `collect.pii` (see `ingest_with_config`)."""
    report = IngestReport()
    masker = masker or default_masker()
    for path in log_files(paths):
        _ingest_file(store, path, report, progress, masker, keep_original)
        report.feedback_joined += store.apply_feedback()
    return report


def ingest_with_config(
    store: Store, paths: Iterable[str | Path], config, progress: bool = True
) -> IngestReport:
    """`ingest` with PII settings from a `flywheel.config.Config`."""
    pii = config.collect.pii
    return ingest(store, paths, progress, PiiMasker.from_config(pii), pii.keep_original)


class _FileIngest:
    """The batches of one file: validated records wait here until a flush writes them."""

    def __init__(
        self, store: Store, source: str, report: IngestReport, masker: PiiMasker, keep_original: bool
    ):
        self.store, self.source, self.report = store, source, report
        self.masker, self.keep_original = masker, keep_original
        self.good: list[tuple[Interaction, str, int, str]] = []  # record, digest, line, raw
        self.feedback: list[dict[str, Any]] = []
        self.bad: list[dict[str, Any]] = []
        self.seen_in_batch: dict[str, str] = {}  # id -> content hash, for conflicts inside one batch

    def __len__(self) -> int:
        return len(self.good) + len(self.feedback) + len(self.bad)

    def quarantine(self, line: int, raw: str, reason: str) -> None:
        self.report.quarantined += 1
        raw = _clean(raw)
        key = hashlib.sha256(f"{self.source}\0{line}\0{raw}".encode()).hexdigest()
        self.bad.append(
            {
                "content_hash": key,
                "source": _clean(self.source),
                "line": line,
                "reason": _clean(reason),
                "raw": raw[:RAW_KEEP_CHARS],
                "quarantined_at": utcnow(),
            }
        )

    def add(self, line: int, raw: str, obj: dict[str, Any]) -> None:
        digest = hashlib.sha256(_canonical(obj)).hexdigest()  # raises ValueError: quarantined
        kind = record_kind(obj)
        if kind == "feedback":
            record = FeedbackRecord.model_validate(obj)
            self.feedback.append(feedback_row(record, digest, self.source, self.masker))
            return
        if kind == "blueprint":
            record = BlueprintRecord.model_validate(obj).to_interaction(digest)
        else:
            record = Interaction.model_validate(obj)
        if record.latency_ms is None and self.store.latency_required:
            raise ValueError("latency_ms is null, and this store predates optional latency: recreate it")
        earlier = self.seen_in_batch.get(record.id)
        if earlier == digest:
            self.report.duplicates += 1
            return
        if earlier is not None:
            self.quarantine(line, raw, f"id {record.id!r} appears earlier with other content")
            return
        self.seen_in_batch[record.id] = digest
        self.good.append((record, digest, line, raw))

    def flush(self) -> None:
        stored = self.store.hashes_for_ids(record.id for record, *_ in self.good)
        fresh = []
        for record, digest, line, raw in self.good:
            known = stored.get(record.id)
            if known is None:
                fresh.append((record, digest, self.source))
            elif known == digest:
                self.report.duplicates += 1
            else:
                self.quarantine(line, raw, f"id {record.id!r} already stored with other content")
        rows = to_rows(fresh, self.masker, self.keep_original)
        new_rows, new_feedback = self.store.write_batch(rows, self.bad, self.feedback)
        self.report.accepted += new_rows + new_feedback
        self.report.feedback += new_feedback
        self.report.duplicates += len(rows) - new_rows + len(self.feedback) - new_feedback
        self.good.clear()
        self.feedback.clear()
        self.bad.clear()
        self.seen_in_batch.clear()


def _ingest_file(
    store: Store, path: Path, report: IngestReport, progress: bool, masker: PiiMasker, keep_original: bool
) -> None:
    batch = _FileIngest(store, str(path), report, masker, keep_original)
    with tqdm(desc=f"ingest {path.name}", unit=" rec", disable=not progress, mininterval=1.0) as bar:
        for line, raw, obj, error in _records(path):
            report.read += 1
            bar.update()
            if error:
                batch.quarantine(line, raw or "", error)
                continue
            raw_text = raw if raw is not None else json.dumps(obj, default=str)
            try:
                batch.add(line, raw_text, obj)
            except ValidationError as err:
                batch.quarantine(line, raw_text, _validation_reason(err))
            except (ValueError, TypeError, RecursionError) as err:
                batch.quarantine(line, raw_text, f"schema: {err}"[:500])
            if len(batch) >= BATCH_SIZE:
                batch.flush()
        batch.flush()
