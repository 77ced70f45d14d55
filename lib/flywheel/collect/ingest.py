"""Streaming ingestion of interaction logs into the store.

Reads JSONL (optionally gzipped) and Parquet files, or folders of them, in batches; validates each record
against the log schema (`flywheel.core.schema`: our `Interaction`, a separate `FeedbackRecord`, or the NVIDIA
blueprint's `BlueprintRecord`), masks PII in batches with the one configured masker and writes each batch
in one transaction: memory stays flat whatever the file size. Every record read ends up counted exactly
once: accepted, duplicate, or quarantined with a reason. Nothing one record or file holds can stop the
others: a record that fails anywhere (parsing, validation, masking, the store) is quarantined, and so is
the unreadable rest of a file. A killed ingest leaves whole batches only; running it again completes it.
The quarantine keeps a PII-masked copy of the start of each bad record and the SHA-256 of the raw bytes,
never the raw text.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import multiprocessing
import os
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import ValidationError
from tqdm.auto import tqdm

from flywheel.core.pii import PiiMasker
from flywheel.core.rows import (
    clean_text,
    default_masker,
    feedback_rows,
    message_parts,
    to_rows,
)
from flywheel.core.schema import BlueprintRecord, FeedbackRecord, Interaction, record_kind
from flywheel.core.store import Store, utcnow

BATCH_SIZE = 1000
BATCH_BYTES = 32 * 2**20  # a batch of huge records is written early: memory stays bounded
RAW_KEEP_CHARS = 2000  # quarantine keeps the (masked) start of a bad record, enough to see what went wrong
RAW_MASK_CHARS = 4 * RAW_KEEP_CHARS  # masked before the cut, so that no PII is cut in half at the edge
MAX_RECORD_BYTES = 8 * 1024 * 1024  # a longer line is quarantined unread: memory stays bounded
MAX_QUERY_CHARS = 200_000  # a longer user message is quarantined (default of `collect.max_query_chars`)
PARALLEL_MIN_BYTES = 16 * 2**20  # from this file size on, worker processes convert (see worker_count)
SUFFIXES = (".jsonl", ".json", ".parquet", ".jsonl.gz", ".json.gz")
UTF16_STARTS = (codecs.BOM_UTF16_LE + b"{\x00", codecs.BOM_UTF16_BE + b"\x00{")


@dataclass
class IngestReport:
    read: int = 0
    accepted: int = 0  # new interactions plus new separate feedback records
    duplicates: int = 0
    quarantined: int = 0
    feedback: int = 0  # of `accepted`: separate feedback records
    feedback_joined: int = 0  # interactions whose feedback a separate record set
    tokens_estimated: int = 0  # of `accepted`: interactions logged without token counts (estimated)
    files: int = 0
    workers: int = 0  # the most worker processes one file was converted with (0: in this process)

    def reconciles(self) -> bool:
        return self.read == self.accepted + self.duplicates + self.quarantined

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _is_log_file(path: Path) -> bool:
    return path.name.endswith(SUFFIXES) and not path.name.startswith(".")


def log_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into their log files (sorted), each once, as resolved absolute paths: one file has
    one name whatever the spelling. A missing path is an error, not a silent skip."""
    files: list[Path] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            # a dangling link is listed (and quarantined as unreadable) rather than skipped in silence
            found = sorted(p for p in path.rglob("*") if _is_log_file(p) and (p.is_file() or p.is_symlink()))
        elif path.is_file():
            found = [path]
        else:
            raise FileNotFoundError(f"log path does not exist: {path}")
        for file in found:
            resolved = file.resolve() if file.exists() else file.absolute()
            if resolved not in seen:
                seen.add(resolved)
                files.append(resolved)
    return files


# --- reading: (line, raw bytes or parsed row, error) per record; never raises -----------------------------


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


Item = tuple[int, bytes | dict[str, Any] | None, str | None]  # line, raw line or Parquet row, error


def read_items(path: Path) -> Iterator[Item]:
    """The records of one file, unparsed (JSONL) or as rows (Parquet). A file that cannot be read, or
    whose rest cannot (a corrupt Parquet page, a truncated gzip stream), ends in one error item."""
    line = 0
    try:
        if path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            with pq.ParquetFile(path) as parquet:
                for batch in parquet.iter_batches(batch_size=BATCH_SIZE):
                    for row in batch.to_pylist():
                        line += 1
                        yield line, row, None
            return
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as f:
            for line, raw in _lines(f):
                if raw is None:
                    yield line, None, f"record longer than {MAX_RECORD_BYTES} bytes"
                    continue
                if line == 1:
                    if raw.startswith(UTF16_STARTS):
                        yield line, raw, "UTF-16 text: write the log as UTF-8 (the whole file is skipped)"
                        return
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                if raw.strip():
                    yield line, raw.rstrip(b"\r\n"), None
    except Exception as err:
        yield line + 1, None, f"unreadable file from line {line + 1} on: {type(err).__name__}: {err}"[:500]


class Unparsable(ValueError):
    """A line that is not a JSON object; the message is the quarantine reason."""


# Where orjson's canonical bytes may differ from json's. orjson reads an integer beyond 64 bits as a float,
# written with an exponent ("e+19"): such a line, if it holds a 19-digit run, is read by json instead.
# orjson writes floats below 1e-4 otherwise ("0.00001", "1e-7" for "1e-05", "1e-07"): such bytes are made
# by json. Plain `in` tests first: a regex scan of every line would cost more than orjson saves.
_LONG_DIGIT_RUN = re.compile(rb"\d{19}")
_SHORT_NEGATIVE_EXPONENT = re.compile(rb"e-\d[,\]}]")


def _parse_canonical(raw: bytes) -> tuple[dict[str, Any], bytes | None]:
    """One JSONL line as an object, and its canonical bytes where orjson made them (None: use
    `_canonical`). orjson (several times faster) is used only where it agrees with json byte for byte
    (tests/test_ingest_perf.py); whatever it refuses (NaN, a lone surrogate escape, ...) json reads, with
    json's reasons. Raises Unparsable with the reason, ValueError for a NUL character."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _parse_json(raw), None
    if not isinstance(obj, dict):
        raise Unparsable(f"a record must be a JSON object, got {type(obj).__name__}")
    try:
        data = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return obj, None
    if b"e+" in data and _LONG_DIGIT_RUN.search(raw):
        return _parse_json(raw), None
    if b"0.0000" in data or (b"e-" in data and _SHORT_NEGATIVE_EXPONENT.search(data)):
        return obj, None
    if b"\\u0000" in data:
        raise ValueError("a NUL character in a string")
    return obj, data


def _parse_json(raw: bytes) -> dict[str, Any]:
    """One JSONL line as an object, read by json; raises Unparsable with the reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Unparsable(f"invalid UTF-8: {err.reason} at byte {err.start}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise Unparsable(f"invalid JSON: {err.msg} at column {err.colno}") from None
    except RecursionError:
        raise Unparsable("invalid JSON: nested too deeply") from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise Unparsable(f"invalid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise Unparsable(f"a record must be a JSON object, got {type(obj).__name__}")
    return obj


# --- converting: validation, hashing, masking, token estimates ----------------------------------------------


# Built once: json.dumps with options builds an encoder per call, a visible share of a record's time.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False
)


def _canonical(obj: dict[str, Any]) -> bytes:
    """The record as canonical JSON bytes. Raises ValueError on what no store can hold."""
    try:
        text = _CANONICAL.encode(obj)
    except ValueError:
        raise ValueError("a number is NaN, Infinity or beyond the float range") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("invalid Unicode: a lone surrogate in a string") from None
    if b"\\u0000" in data:
        raise ValueError("a NUL character in a string")
    return data


def _validation_reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(x) for x in e["loc"]) or "record"
        parts.append(f"{where}: {e['msg']}")
    return "schema: " + "; ".join(parts)


@dataclass(frozen=True)
class IngestSettings:
    """What converting a record needs besides the record: picklable, for worker processes."""

    source: str
    masker: PiiMasker
    keep_original: bool = False
    max_query_chars: int = MAX_QUERY_CHARS
    latency_required: bool = False


@dataclass(slots=True)
class Bad:
    line: int
    raw: bytes | dict[str, Any] | None
    reason: str


@dataclass(slots=True)
class Good:
    line: int
    raw: bytes | dict[str, Any]
    id: str
    digest: str
    row: dict[str, Any]


@dataclass
class Converted:
    """One batch after conversion: interaction rows (in line order), feedback rows, bad records."""

    good: list[Good] = field(default_factory=list)
    feedback: list[Good] = field(default_factory=list)  # `id` is the interaction's
    bad: list[Bad] = field(default_factory=list)


def _problem(err: Exception) -> str:
    if isinstance(err, Unparsable):
        return str(err)
    if isinstance(err, ValidationError):
        return _validation_reason(err)
    if isinstance(err, ValueError):
        return f"schema: {err}"[:500]
    return f"could not convert the record: {type(err).__name__}: {err}"[:500]


def _validate(
    obj: dict[str, Any], digest: str, settings: IngestSettings, raw: bytes | dict[str, Any]
) -> Interaction | FeedbackRecord:
    kind = record_kind(obj)
    if kind == "feedback":
        return FeedbackRecord.model_validate(obj)
    if kind == "blueprint":
        record = BlueprintRecord.model_validate(obj).to_interaction(digest)
    else:
        record = Interaction.model_validate(obj)
    if record.latency_ms is None and settings.latency_required:
        raise ValueError("latency_ms is null, and this store predates optional latency: recreate it")
    if isinstance(raw, bytes) and len(raw) <= settings.max_query_chars:
        return record  # no text of a line is longer than the line
    longest = max(map(len, message_parts(record.request, ("user",))), default=0)
    if longest > settings.max_query_chars:
        raise ValueError(
            f"a user message of {longest} characters is over collect.max_query_chars "
            f"({settings.max_query_chars})"
        )
    return record


def _each_or_quarantine(build, items: list, bad: list[Bad]) -> list:
    """`build(items)` as one batch, paired with the items; if the batch fails, item by item, quarantining
    the items (line, raw, ...) that fail."""
    try:
        return list(zip(items, build(items), strict=True))
    except Exception:
        built = []
        for item in items:
            try:
                built.append((item, build([item])[0]))
            except Exception as err:
                reason = f"could not build the store row: {type(err).__name__}: {err}"
                bad.append(Bad(item[0], item[1], reason[:500]))
        return built


def convert_batch(items: Sequence[Item], settings: IngestSettings) -> Converted:
    """Parse, validate, hash, mask and estimate one batch. Never raises for a record: a record that
    fails at any step is returned as bad, with a reason."""
    out = Converted()
    interactions: list[tuple[int, bytes | dict[str, Any], Interaction, str]] = []
    feedbacks: list[tuple[int, bytes | dict[str, Any], FeedbackRecord, str]] = []
    for line, raw, error in items:
        if error is not None:
            out.bad.append(Bad(line, raw, error))
            continue
        try:
            obj, canonical = (raw, None) if isinstance(raw, dict) else _parse_canonical(raw)
            digest = hashlib.sha256(canonical or _canonical(obj)).hexdigest()
            record = _validate(obj, digest, settings, raw)
        except Exception as err:
            out.bad.append(Bad(line, raw, _problem(err)))
            continue
        if isinstance(record, FeedbackRecord):
            feedbacks.append((line, raw, record, digest))
        else:
            interactions.append((line, raw, record, digest))

    source, masker = settings.source, settings.masker
    for (line, raw, record, digest), row in _each_or_quarantine(
        lambda batch: to_rows(
            [(r, d, source) for _, _, r, d in batch],
            masker,
            settings.keep_original,
            clean=False,  # every text passed `_canonical`
            from_text=all(isinstance(raw, bytes) for _, raw, _, _ in batch),
        ),
        interactions,
        out.bad,
    ):
        out.good.append(Good(line, raw, record.id, digest, row))
    for (line, raw, record, digest), row in _each_or_quarantine(
        lambda batch: feedback_rows([(r, d, source) for _, _, r, d in batch], masker), feedbacks, out.bad
    ):
        out.feedback.append(Good(line, raw, record.interaction_id, digest, row))
    return out


# --- the quarantine: masked copy and hash, never the raw text ---------------------------------------------


def _raw_bytes(raw: bytes | str | dict[str, Any] | None) -> bytes:
    if raw is None:
        return b""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode("utf-8", errors="surrogatepass")
    return json.dumps(raw, ensure_ascii=False, default=str).encode("utf-8", errors="surrogatepass")


def _masked_or_blank(masker: PiiMasker, texts: list[str], names: bool = True) -> list[str]:
    """Masked texts; one the masker fails on becomes "" (no copy is better than an unmasked one)."""
    try:
        return masker.mask_many(texts, names=names)
    except Exception:  # one by one, to lose only the text that fails
        masked = []
        for text in texts:
            try:
                masked.append(masker.mask_many([text], names=names)[0])
            except Exception:
                masked.append("")
        return masked


def quarantine_rows(bad: Sequence[Bad], source: str, masker: PiiMasker) -> list[dict[str, Any]]:
    """Quarantine rows keyed by (resolved file, line, SHA-256 of the raw record): re-ingesting the same
    file under any path spelling adds none. `raw` holds the start of the record after PII masking."""
    data = [_raw_bytes(b.raw) for b in bad]
    heads = [d[: 4 * RAW_MASK_CHARS].decode("utf-8", errors="replace")[:RAW_MASK_CHARS] for d in data]
    masked = _masked_or_blank(masker, heads)
    reasons = _masked_or_blank(masker, [b.reason for b in bad], names=False)  # a reason may quote a value
    reasons = [r or b.reason.split(":")[0] for r, b in zip(reasons, bad, strict=True)]
    rows = []
    for b, d, copy, reason in zip(bad, data, masked, reasons, strict=True):
        digest = hashlib.sha256(d).hexdigest()
        rows.append(
            {
                "content_hash": hashlib.sha256(
                    f"{source}\0{b.line}\0{digest}".encode("utf-8", errors="surrogatepass")
                ).hexdigest(),
                "source": clean_text(source),
                "line": b.line,
                "reason": clean_text(reason),
                "raw": clean_text(copy[:RAW_KEEP_CHARS]),
                "raw_sha256": digest,
                "quarantined_at": utcnow(),
            }
        )
    return rows


def scrub_legacy_quarantine(store: Store, masker: PiiMasker) -> int:
    """Quarantine rows written before the store kept masked copies hold raw text: mask them in place."""
    legacy = store.legacy_quarantine()
    if not legacy:
        return 0
    masked = _masked_or_blank(masker, [raw[:RAW_MASK_CHARS] for _, raw in legacy])
    store.set_quarantine_copies(
        [
            (
                key,
                clean_text(text[:RAW_KEEP_CHARS]),
                hashlib.sha256(_raw_bytes(raw)).hexdigest(),
            )
            for (key, raw), text in zip(legacy, masked, strict=True)
        ]
    )
    return len(legacy)


# --- the run ---------------------------------------------------------------------------------------------


def ingest(
    store: Store,
    paths: Iterable[str | Path],
    progress: bool = True,
    masker: PiiMasker | None = None,
    keep_original: bool = False,
    max_query_chars: int = MAX_QUERY_CHARS,
    workers: int | None = None,
) -> IngestReport:
    """Ingest log files into the store; re-ingesting the same records adds nothing. `masker`,
    `keep_original` and `max_query_chars` come from the config's `collect` (see `ingest_with_config`);
    `workers`: processes that convert and mask (see `worker_count`; 0 or 1: none)."""
    report = IngestReport()
    masker = masker or default_masker()
    scrub_legacy_quarantine(store, masker)
    for path in log_files(paths):
        source = clean_text(str(path))  # a file name need not be valid UTF-8
        settings = IngestSettings(source, masker, keep_original, max_query_chars, store.latency_required)
        _ingest_file(store, path, report, progress, settings, workers)
        report.files += 1
        report.feedback_joined += store.apply_feedback()
    return report


def ingest_with_config(
    store: Store, paths: Iterable[str | Path], config, progress: bool = True
) -> IngestReport:
    """`ingest` with the PII settings (`collect.pii`) and question limit of a `Config`."""
    pii = config.collect.pii
    masker = PiiMasker.from_config(pii)
    return ingest(store, paths, progress, masker, pii.keep_original, config.collect.max_query_chars)


def _refused(err: Exception) -> bool:
    """The store refused a row for its values (a constraint, a type, a driver's own check), not for being
    unreachable or busy: that row is quarantined; anything else stops the ingest."""
    if isinstance(err, sa.exc.IntegrityError | sa.exc.DataError):
        return True
    return isinstance(err, sa.exc.StatementError) and not isinstance(err, sa.exc.DBAPIError)


class _Writer:
    """Decides duplicates and id conflicts against the store, then writes a converted batch."""

    def __init__(self, store: Store, report: IngestReport, settings: IngestSettings):
        self.store, self.report, self.settings = store, report, settings
        self.conflicts: set[str] = (
            set()
        )  # digests quarantined as conflicts: the same line again is a duplicate

    def write(self, converted: Converted) -> None:
        report = self.report
        bad = list(converted.bad)
        known = self.store.hashes_for_ids(g.id for g in converted.good)  # id -> the content stored under it
        fresh = []
        for good in converted.good:
            stored = known.get(good.id)
            if stored is None:
                known[good.id] = good.digest  # the first one in the file wins
                fresh.append(good)
            elif stored == good.digest or good.digest in self.conflicts:
                report.duplicates += 1
            else:
                self.conflicts.add(good.digest)
                bad.append(Bad(good.line, good.raw, f"id {good.id!r} already has other content"))
        try:
            new_rows, new_feedback = self.store.write_batch(
                [g.row for g in fresh], self._quarantine(bad), [g.row for g in converted.feedback]
            )
        except sa.exc.StatementError as err:
            if not _refused(err):
                raise
            self._row_by_row(fresh, converted.feedback, bad)
            return
        report.quarantined += len(bad)
        report.accepted += new_rows + new_feedback
        report.feedback += new_feedback
        report.duplicates += len(fresh) - new_rows + len(converted.feedback) - new_feedback
        report.tokens_estimated += sum(g.row["tokens_estimated"] for g in fresh)  # near enough on a race

    def _quarantine(self, bad: Sequence[Bad]) -> list[dict[str, Any]]:
        return quarantine_rows(bad, self.settings.source, self.settings.masker)

    def _row_by_row(self, fresh: list[Good], feedback: list[Good], bad: list[Bad]) -> None:
        """The store refused the batch: write each row alone, quarantining those it refuses."""
        report = self.report
        for i, good in enumerate([*fresh, *feedback]):
            is_feedback = i >= len(fresh)
            try:
                new = self.store.write_batch(*(((), (), [good.row]) if is_feedback else ([good.row],)))
            except sa.exc.StatementError as err:
                if not _refused(err):
                    raise
                orig = getattr(err, "orig", None) or err
                bad.append(Bad(good.line, good.raw, f"the store refused the record: {type(orig).__name__}"))
                continue
            added = new[1] if is_feedback else new[0]
            report.accepted += added
            report.feedback += added if is_feedback else 0
            report.duplicates += 1 - added
            if not is_feedback:
                report.tokens_estimated += good.row["tokens_estimated"] * added
        self.store.write_batch((), self._quarantine(bad))
        report.quarantined += len(bad)


def _batches(path: Path, report: IngestReport, progress: bool) -> Iterator[list[Item]]:
    """The file's records in batches of BATCH_SIZE records or BATCH_BYTES bytes, whichever comes first."""
    batch: list[Item] = []
    size = 0
    with tqdm(desc=f"ingest {path.name}", unit=" rec", disable=not progress, mininterval=1.0) as bar:
        for item in read_items(path):
            report.read += 1
            bar.update()
            batch.append(item)
            size += len(item[1]) if isinstance(item[1], bytes) else 1000
            if len(batch) >= BATCH_SIZE or size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch


def worker_count(path: Path, workers: int | None) -> int:
    """Worker processes for one file: `workers` if given, else FLYWHEEL_INGEST_WORKERS, else, for a file
    of PARALLEL_MIN_BYTES or more (starting them costs more than a small file takes), one per core that
    other processes leave idle (`idle_cores`): on cores busy elsewhere, workers only add contention.
    0 (convert here) where that is fewer than 2, or where processes cannot be forked."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    if workers is None and os.environ.get("FLYWHEEL_INGEST_WORKERS"):
        workers = int(os.environ["FLYWHEEL_INGEST_WORKERS"])
    if workers is None:
        try:
            big = path.stat().st_size >= PARALLEL_MIN_BYTES
        except OSError:  # unreadable: read_items reports it
            big = False
        workers = int(idle_cores() + 0.5) if big else 0
    return workers if workers > 1 else 0


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpu_times() -> tuple[int, int]:
    """(idle, total) CPU time of the machine so far, in ticks (Linux's /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return ticks[3] + ticks[4], sum(ticks[:8])  # idle + iowait; user .. steal (guest time is in user)


def idle_cores(sample_s: float = 0.2) -> float:
    """Cores of this process's share that are idle now, measured over `sample_s` (this process sleeps
    meanwhile). Not the load average: its minute of history counts this process's own past work (model
    loading, the previous file) as other load and kept a quiet 2-core machine to one core. Where
    /proc/stat is missing, the 1-minute load average less this process."""
    cores = _usable_cores()
    try:
        idle_before, total_before = _cpu_times()
        time.sleep(sample_s)
        idle_after, total_after = _cpu_times()
    except (OSError, ValueError, IndexError):
        return max(0.0, cores - max(0.0, os.getloadavg()[0] - 1))
    share = (idle_after - idle_before) / max(1, total_after - total_before)
    return min(float(cores), share * (os.cpu_count() or cores))


_WORKER_SETTINGS: IngestSettings | None = None  # set in each worker process, inherited through fork


def _start_worker(settings: IngestSettings) -> None:
    global _WORKER_SETTINGS
    _WORKER_SETTINGS = settings
    settings.masker.mask("Warm up with Dana Smith")  # loads what the masker loads lazily, once per worker


def _convert_in_worker(batch: list[Item]) -> Converted:
    assert _WORKER_SETTINGS is not None
    return convert_batch(batch, _WORKER_SETTINGS)


def _converted(batches: Iterator[list[Item]], settings: IngestSettings, workers: int) -> Iterator[Converted]:
    """Converted batches, in file order. With workers, converting runs in that many processes while this
    one reads and writes; at most `workers + 1` batches are in flight, so memory stays flat."""
    if workers == 0:
        for batch in batches:
            yield convert_batch(batch, settings)
        return
    # fork: the workers inherit the settings and the loaded NER model (nothing to pickle or load again),
    # and need no importable __main__ (spawn would re-run an unguarded calling script).
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, context, _start_worker, (settings,)) as pool:
        pending: deque[tuple[list[Item], Future]] = deque()
        for batch in batches:
            pending.append((batch, pool.submit(_convert_in_worker, batch)))
            if len(pending) > workers:
                yield _result(*pending.popleft(), settings)
        while pending:
            yield _result(*pending.popleft(), settings)


def _result(batch: list[Item], future: Future, settings: IngestSettings) -> Converted:
    try:
        return future.result()
    except Exception:  # a worker died (killed for memory?) or failed: this batch is converted here
        return convert_batch(batch, settings)


def _ingest_file(
    store: Store,
    path: Path,
    report: IngestReport,
    progress: bool,
    settings: IngestSettings,
    workers: int | None = None,
) -> None:
    writer = _Writer(store, report, settings)
    workers = worker_count(path, workers)
    report.workers = max(report.workers, workers)
    for converted in _converted(_batches(path, report, progress), settings, workers):
        writer.write(converted)
