"""Ingest's fast paths agree with the plain ones: orjson's canonical bytes are json.dumps' byte for byte
(content hashes of a store written before must dedupe re-ingested records), and the worker rule uses
both cores of a quiet machine. Speed itself is measured in bench/ingest_throughput.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flywheel.collect import ingest as ingest_module
from flywheel.core import rows as rows_module

# every character, lone surrogates included (they reach a line as "\ud800" escapes)
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=30)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: beyond 64 bits too
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=-1e-3, max_value=1e-3)  # where orjson spells floats otherwise
    | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)
RECORDS = st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=6)


def _before(raw: bytes) -> tuple[str, object]:
    """What ingest made of a line before orjson: ("ok", (object, canonical bytes)) or ("bad", reason)."""
    try:
        obj = ingest_module._parse_json(raw)
        return "ok", (obj, ingest_module._canonical(obj))
    except ValueError as err:  # Unparsable is a ValueError
        return "bad", str(err)


def _now(raw: bytes) -> tuple[str, object]:
    try:
        obj, data = ingest_module._parse_canonical(raw)
        return "ok", (obj, data if data is not None else ingest_module._canonical(obj))
    except ValueError as err:
        return "bad", str(err)


def _same(raw: bytes) -> None:
    before, now = _before(raw), _now(raw)
    assert now[0] == before[0], (raw, before, now)
    if now[0] == "bad":
        assert now[1] == before[1]
        return
    (obj_before, bytes_before), (obj_now, bytes_now) = before[1], now[1]
    assert bytes_now == bytes_before  # the content hash is the SHA-256 of these bytes
    assert obj_now == obj_before
    assert json.loads(rows_module._stored_json(obj_now, True)) == obj_before


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RECORDS, st.booleans())
@example({"latency_ms": 1e-05, "x": [1e-7, 2.5e-9, 1e16, 1.5e-300]}, False)
@example({"id": 2**64, "n": -(2**63) - 1, "m": 2**63}, False)
@example({"s": "\ud800", "t": "é😀\x00\x1f\u2028"}, True)
@example({"é": 1, "z": 2, "😀": 3, "\uffff": 4, "": 5}, False)
def test_canonical_bytes_are_json_dumps_bytes(record, ascii_only):
    """Whatever JSON object a line holds, written either way, the bytes hashed are those of json.dumps."""
    try:
        raw = json.dumps(record, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate can only reach a line escaped
        raw = json.dumps(record, ensure_ascii=True).encode("utf-8")
    _same(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1E5, "b": 1.0e-7, "c": -0, "d": -0.0, "e": 0.00001, "f": 1e-4}',
        b'{"a": 100000000000000000000, "b": -18446744073709551617, "c": 1234567890123456789}',
        b'{"a": "12345678901234567890", "b": 1e+300}',
        b'{"a": 1e400}',
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'{"a": "\\ud800"}',
        b'{"a": "\\u0000"}',
        b'{"a": 1, "a": 2}',
        b'{"a": "\xff"}',
        b'{"a": "\xed\xa0\x80"}',
        b'{"a": "tab\there"}',
        b"[1, 2]",
        b'"text"',
        b"{",
        b'{"a": 1} x',
        b"[" * 300 + b"]" * 300,
        b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}",
        b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"a": 1' + b"0" * 5000 + b"}",
    ],
)
def test_hand_written_numbers_and_strings(raw):
    """Literals json.dumps never writes (1E5, -0, 20-digit integers), values json reads and orjson
    refuses (NaN, lone surrogates) and broken lines: the same object, bytes or reason as before."""
    _same(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60) | st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes(raw):
    """orjson never accepts a line json refuses, nor reads it otherwise."""
    _same(b'{"a": ' + raw + b"}")
    _same(raw)


PHONE_ALPHABET = "0123456789٣४ +-().x/~[]　ext;:ab\n"


@settings(max_examples=400, deadline=None)
@given(st.text(st.sampled_from(PHONE_ALPHABET), max_size=40))
@example("+683 4002")
@example("1640")
@example("(408) 555-0115 ext. 12")
@example("+1 (408) 555 - 0115")
@example("tel: +44 20 7946 0958")
def test_phone_gate_passes_every_text_libphonenumber_matches(text):
    """The masker hands libphonenumber only texts with a run of 7 digits: none it finds a number of 7 or
    more digits in. (Shorter valid numbers exist, e.g. German 4-digit service numbers like 1640; they reach
    no person and stay unmasked.)"""
    import phonenumbers

    from flywheel.core.pii import PHONE_DIGITS, PHONE_RUN

    for region in ("US", "GB", "DE"):
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            if len(phonenumbers.national_significant_number(match.number)) >= PHONE_DIGITS:
                assert PHONE_RUN.search(text), (text, region)


def _big_file(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as f:
        f.truncate(ingest_module.PARALLEL_MIN_BYTES)  # sparse: only its size matters here
    return path


def test_quiet_two_core_machine_uses_both_cores(tmp_path, monkeypatch):
    """Right after this process's own busy minute (loading models, an earlier file) the 1-minute load
    average reads 1.6 on an otherwise idle 2-core machine: ingest still converts in 2 workers."""
    ticks = iter(range(0, 10**9, 100))

    def idle_machine():  # (idle, total) ticks: every tick since the last reading was idle
        t = next(ticks)
        return t, t

    monkeypatch.delenv("FLYWHEEL_INGEST_WORKERS", raising=False)
    monkeypatch.setattr(ingest_module, "_cpu_times", idle_machine, raising=False)
    monkeypatch.setattr(ingest_module.os, "getloadavg", lambda: (1.6, 1.2, 0.8))
    monkeypatch.setattr(ingest_module.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(ingest_module.os, "cpu_count", lambda: 2)
    assert ingest_module.worker_count(_big_file(tmp_path), None) == 2


def test_busy_machine_converts_in_process(tmp_path, monkeypatch):
    """Cores busy elsewhere: no workers (they would only add contention)."""
    ticks = iter(range(0, 10**9, 100))

    def busy_machine():  # one core's worth of idle time on 2 cores
        t = next(ticks)
        return t // 4, t

    monkeypatch.delenv("FLYWHEEL_INGEST_WORKERS", raising=False)
    monkeypatch.setattr(ingest_module, "_cpu_times", busy_machine)
    monkeypatch.setattr(ingest_module.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(ingest_module.os, "cpu_count", lambda: 2)
    assert ingest_module.worker_count(_big_file(tmp_path), None) == 0


def test_idle_cores_reads_this_machine(monkeypatch):
    def no_load_average():
        raise AssertionError("idle_cores fell back to the load average: /proc/stat was not read")

    monkeypatch.setattr(ingest_module.os, "getloadavg", no_load_average)
    cores = len(ingest_module.os.sched_getaffinity(0))
    assert 0.0 <= ingest_module.idle_cores(0.05) <= cores
