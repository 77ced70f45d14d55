"""Streaming ingestion of interaction logs into the store.

Reads JSONL and Parquet files (or folders of them) record by record, validates each against
`flywheel.schema.Interaction`, and writes in batches: memory stays flat whatever the file size.
Every record read ends up counted exactly once: accepted, duplicate, or quarantined with a reason.
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

from flywheel.collect.pii import mask_pii
from flywheel.schema import Interaction
from flywheel.store import Store, utcnow

BATCH_SIZE = 1000
RAW_KEEP_CHARS = 2000  # quarantine keeps the start of a bad record, enough to see what went wrong
SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass
class IngestReport:
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0

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
        for line, raw_bytes in enumerate(f, start=1):
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
            if not isinstance(obj, dict):
                yield line, raw, None, f"a record must be a JSON object, got {type(obj).__name__}"
                continue
            yield line, raw, obj, None


def content_hash(obj: dict[str, Any]) -> str:
    canonical = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _validation_reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(x) for x in e["loc"]) or "record"
        parts.append(f"{where}: {e['msg']}")
    return "schema: " + "; ".join(parts)


def to_row(record: Interaction, digest: str, source: str) -> dict[str, Any]:
    feedback = record.feedback
    return {
        "id": record.id,
        "content_hash": digest,
        "timestamp": record.timestamp,
        "session_id": record.session_id,
        "user_id": record.user_id,
        "query": record.query,
        "query_masked": mask_pii(record.query),
        "routed_expert": record.routed_expert,
        "model": record.model,
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
        "tokens_in": record.tokens_in,
        "tokens_out": record.tokens_out,
        "answer_excerpt": record.answer_excerpt,
        "thumbs": feedback.thumbs if feedback else None,
        "rating": feedback.rating if feedback else None,
        "comment": feedback.comment if feedback else None,
        "satisfied": feedback.satisfied if feedback else None,
        "request_json": json.dumps(record.request, ensure_ascii=False),
        "response_json": json.dumps(record.response, ensure_ascii=False),
        "source": source,
        "ingested_at": utcnow(),
    }


def ingest(store: Store, paths: Iterable[str | Path], progress: bool = True) -> IngestReport:
    """Ingest log files into the store; re-ingesting the same records adds nothing."""
    report = IngestReport()
    for path in log_files(paths):
        _ingest_file(store, path, report, progress)
    return report


def _ingest_file(store: Store, path: Path, report: IngestReport, progress: bool) -> None:
    source = str(path)
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    seen_in_batch: dict[str, str] = {}  # id -> content hash, for conflicts inside one batch

    def quarantine(line: int, raw: str, reason: str) -> None:
        report.quarantined += 1
        key = hashlib.sha256(f"{source}\0{line}\0{raw}".encode()).hexdigest()
        bad.append(
            {
                "content_hash": key,
                "source": source,
                "line": line,
                "reason": reason,
                "raw": raw[:RAW_KEEP_CHARS],
                "quarantined_at": utcnow(),
            }
        )

    def flush() -> None:
        stored = store.hashes_for_ids(row["id"] for row in good)
        fresh = []
        for row in good:
            known = stored.get(row["id"])
            if known is None:
                fresh.append(row)
            elif known == row["content_hash"]:
                report.duplicates += 1
            else:
                quarantine(
                    row.pop("line"), row.pop("raw"), f"id {row['id']!r} already stored with other content"
                )
        for row in fresh:
            del row["line"], row["raw"]
        accepted = store.add_interactions(fresh)
        report.duplicates += len(fresh) - accepted  # same content under another id
        report.accepted += accepted
        store.add_quarantined(bad)
        good.clear()
        bad.clear()
        seen_in_batch.clear()

    with tqdm(desc=f"ingest {path.name}", unit=" rec", disable=not progress, mininterval=1.0) as bar:
        for line, raw, obj, error in _records(path):
            report.read += 1
            bar.update()
            raw_text = raw if raw is not None else json.dumps(obj, default=str)
            if error:
                quarantine(line, raw_text, error)
                continue
            try:
                record = Interaction.model_validate(obj)
            except ValidationError as err:
                quarantine(line, raw_text, _validation_reason(err))
                continue
            digest = content_hash(obj)
            earlier = seen_in_batch.get(record.id)
            if earlier == digest:
                report.duplicates += 1
                continue
            if earlier is not None:
                quarantine(line, raw_text, f"id {record.id!r} appears earlier with other content")
                continue
            seen_in_batch[record.id] = digest
            good.append({**to_row(record, digest, source), "line": line, "raw": raw_text})
            if len(good) + len(bad) >= BATCH_SIZE:
                flush()
        flush()
