import json
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc

import pandas as pd
from conftest import REPO, good_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel.collect import ingest as ingest_module
from flywheel.collect.ingest import ingest
from flywheel.core.pii import PiiMasker
from flywheel.core.store import Store, interactions

FAST = PiiMasker(names=False)  # the NER pass has its own tests (test_pii.py); these are about ingestion


def counts(report):
    return {k: report.as_dict()[k] for k in ("read", "accepted", "duplicates", "quarantined")}


def test_counts_reconcile_and_bad_records_are_quarantined_with_reasons(store, write_jsonl):
    lines = [
        good_record(1),
        good_record(2),
        good_record(1),  # exact duplicate
        '{"id": "ix-9", "timestamp": ',  # truncated JSON
        good_record(3, latency_ms="fast"),  # wrong type
        {k: v for k, v in good_record(4).items() if k != "routed_expert"},  # missing field
        good_record(5, request={"messages": [{"role": "system", "content": "x"}]}),  # no user message
        "[1, 2, 3]",  # not an object
    ]
    path = write_jsonl("logs.jsonl", lines)
    report = ingest(store, [path], progress=False)
    assert counts(report) == {"read": 8, "accepted": 2, "duplicates": 1, "quarantined": 5}
    assert report.reconciles()
    reasons = store.quarantine_frame().set_index("line")["reason"]
    assert reasons[4].startswith("invalid JSON")
    assert "latency_ms" in reasons[5]
    assert "routed_expert" in reasons[6]
    assert "user message" in reasons[7]
    assert "JSON object" in reasons[8]


def test_reingesting_adds_nothing(store, write_jsonl):
    path = write_jsonl("logs.jsonl", [good_record(i) for i in range(20)] + ["not json"])
    first = ingest(store, [path], progress=False)
    second = ingest(store, [path], progress=False)
    assert first.accepted == 20
    assert counts(second) == {"read": 21, "accepted": 0, "duplicates": 20, "quarantined": 1}
    assert store.count(interactions) == 20
    assert len(store.quarantine_frame()) == 1  # the same bad line is quarantined once


def test_same_id_with_other_content_is_a_conflict_not_a_duplicate(store, write_jsonl):
    ingest(store, [write_jsonl("a.jsonl", [good_record(1)])], progress=False)
    changed = good_record(1, routed_expert="finance_earnings")
    report = ingest(store, [write_jsonl("b.jsonl", [changed, changed])], progress=False)
    assert counts(report) == {"read": 2, "accepted": 0, "duplicates": 1, "quarantined": 1}
    assert "other content" in store.quarantine_frame()["reason"].iloc[0]


def test_invalid_utf8_is_quarantined(store, tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(json.dumps(good_record(1)).encode() + b"\n\xff\xfe\x00junk\n")
    report = ingest(store, [path], progress=False)
    assert (report.accepted, report.quarantined) == (1, 1)
    assert store.quarantine_frame()["reason"].iloc[0].startswith("invalid UTF-8")


def test_a_line_over_the_size_limit_is_quarantined_unread(store, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "MAX_RECORD_BYTES", 1000)
    huge = good_record(2, answer_excerpt="x" * 3000)
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (good_record(1), huge, good_record(3))) + "\n")
    report = ingest(store, [path], progress=False)
    assert counts(report) == {"read": 3, "accepted": 2, "duplicates": 0, "quarantined": 1}
    bad = store.quarantine_frame().iloc[0]
    assert (bad["line"], bad["reason"]) == (2, "record longer than 1000 bytes")


def test_parquet_and_folders_ingest(store, tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    rows = [good_record(i) for i in range(5)]
    frame = pd.DataFrame({k: [r[k] for r in rows] for k in rows[0]})
    frame.to_parquet(folder / "part.parquet")
    report = ingest(store, [folder], progress=False)
    assert report.accepted == 5
    stored = store.interactions_frame()
    assert stored["query"].tolist() == [f"vpn down {i}" for i in range(5)]
    assert stored["satisfied"].all()


def test_query_is_masked_for_downstream_use(store, write_jsonl):
    text = "mail jane.doe@corp.com or call +1 408-555-0199 about card 4111 1111 1111 1111"
    record = good_record(1)
    record["request"]["messages"][-1]["content"] = text
    ingest(store, [write_jsonl("pii.jsonl", [record])], progress=False)
    stored = store.interactions_frame().iloc[0]
    assert stored["query_masked"] == "mail [EMAIL] or call [PHONE] about card [CARD]"
    # keep_original is off by default: the raw text is nowhere in the store
    assert stored["query"] == stored["query_masked"]
    assert "jane.doe" not in stored["request_json"]
    assert "[EMAIL]" in stored["request_json"]


def test_keep_original_keeps_the_raw_query_beside_the_masked_one(store, write_jsonl):
    record = good_record(1)
    record["request"]["messages"][-1]["content"] = "reach me at a@b.co"
    ingest(store, [write_jsonl("pii.jsonl", [record])], progress=False, masker=FAST, keep_original=True)
    stored = store.interactions_frame().iloc[0]
    assert (stored["query"], stored["query_masked"]) == ("reach me at a@b.co", "reach me at [EMAIL]")
    assert "a@b.co" in stored["request_json"]


def test_separate_feedback_file_joins_by_interaction_id(store, write_jsonl):
    logs = write_jsonl("logs.jsonl", [good_record(1), good_record(2, feedback=None)])
    fb = write_jsonl(
        "feedback.jsonl",
        [
            {
                "interaction_id": "ix-000002",
                "rating": 2,
                "comment": "call me at (408) 555-0123",
                "timestamp": "2026-09-08T11:00:00Z",
            },
            {"interaction_id": "ix-000001", "thumbs": "down", "timestamp": "2026-09-08T11:00:00Z"},
            {"interaction_id": "ix-000001", "timestamp": "2026-09-08T11:00:00Z"},  # no signal: quarantined
            {"interaction_id": "ix-000777", "thumbs": "up", "timestamp": "2026-09-08T11:00:00Z"},  # waits
        ],
    )
    report = ingest(store, [fb, logs], progress=False, masker=FAST)  # feedback before its log: still joins
    assert counts(report) == {"read": 6, "accepted": 5, "duplicates": 0, "quarantined": 1}
    assert (report.feedback, report.feedback_joined) == (3, 2)
    stored = store.interactions_frame().set_index("id")
    assert stored.loc["ix-000001", "thumbs"] == "down"  # the separate record is newer than the inline one
    assert stored.loc["ix-000001", "satisfied"] == False  # noqa: E712 - numpy bool
    assert (stored.loc["ix-000002", "rating"], stored.loc["ix-000002", "comment"]) == (
        2,
        "call me at [PHONE]",
    )
    assert "no thumbs, rating or comment" in store.quarantine_frame()["reason"].iloc[0]
    again = ingest(store, [fb, logs], progress=False, masker=FAST)
    assert counts(again) == {"read": 6, "accepted": 0, "duplicates": 5, "quarantined": 1}


def test_blueprint_records_map_onto_the_schema(store, write_jsonl):
    blueprint = {
        "timestamp": 1757325302,
        "workload_id": "employee-router",
        "client_id": "hr-portal",
        "request": {
            "model": "meta/llama-3.1-70b-instruct",
            "messages": [{"role": "user", "content": "401k match?"}],
        },
        "response": {
            "id": "chatcmpl-abc",
            "model": "meta/llama-3.1-70b-instruct",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " hr_benefits\n"}}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43},
        },
    }
    no_id = {**blueprint, "response": {**blueprint["response"], "id": None}}
    empty = {**blueprint, "response": {**blueprint["response"], "choices": []}}
    report = ingest(store, [write_jsonl("bp.jsonl", [blueprint, no_id, empty])], progress=False, masker=FAST)
    assert counts(report) == {"read": 3, "accepted": 2, "duplicates": 0, "quarantined": 1}
    stored = store.interactions_frame().set_index("id")
    row = stored.loc["chatcmpl-abc"]
    assert (row["routed_expert"], row["model"], row["query"]) == (
        "hr_benefits",
        "meta/llama-3.1-70b-instruct",
        "401k match?",
    )
    assert (row["session_id"], row["user_id"]) == ("hr-portal/employee-router", "hr-portal")
    assert (row["tokens_in"], row["tokens_out"]) == (40, 3)
    assert pd.isna(row["latency_ms"]) and pd.isna(row["satisfied"])
    assert str(row["timestamp"]) == "2025-09-08 09:55:02+00:00"
    assert [i for i in stored.index if i.startswith("bp-")] != []
    assert "choices" in store.quarantine_frame()["reason"].iloc[0]


def test_memory_stays_flat_as_the_file_grows(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "BATCH_SIZE", 100)

    def peak(n: int) -> int:
        path = tmp_path / f"logs-{n}.jsonl"
        path.write_text("".join(json.dumps(good_record(i)) + "\n" for i in range(n)))
        store = Store(f"sqlite:///{tmp_path / f's{n}.db'}")
        tracemalloc.start()
        report = ingest(store, [path], progress=False, masker=FAST)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert report.accepted == n
        return top

    small, large = peak(400), peak(2000)
    assert large < small * 1.5, (small, large)  # 5x the records, about the same peak


# --- property-based: hostile input never crashes ingestion, and every bad record is accounted for --------

SCALAR_FIELDS = [
    "id",
    "timestamp",
    "session_id",
    "user_id",
    "routed_expert",
    "model",
    "latency_ms",
    "tokens_in",
]
REQUIRED = [f for f in SCALAR_FIELDS if f != "tokens_in"] + ["request", "response"]  # tokens may be absent
STORABLE = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")  # no NUL, no surrogate
wrong_value = st.one_of(
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
)
json_junk = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def log_line(draw, index: int):
    """(is_good, bytes of one line without the newline)."""
    record = good_record(index)
    kind = draw(
        st.sampled_from(
            [
                "good",
                "good_huge",
                "truncated",
                "wrong_type",
                "missing",
                "huge_id",
                "huge_comment",
                "bad_utf8",
                "binary",
                "json_junk",
            ]
        )
    )
    if kind == "good":
        return True, json.dumps(record).encode()
    if kind == "good_huge":  # an enormous question is still a question
        record["request"]["messages"][-1]["content"] = draw(st.text(STORABLE, min_size=1, max_size=20)) * 5000
        return True, json.dumps(record).encode()
    if kind == "truncated":
        text = json.dumps(record)
        return False, text[: draw(st.integers(1, len(text) - 1))].encode()
    if kind == "wrong_type":
        record[draw(st.sampled_from(SCALAR_FIELDS))] = draw(wrong_value)
        return False, json.dumps(record).encode()
    if kind == "missing":
        del record[draw(st.sampled_from(REQUIRED))]
        return False, json.dumps(record).encode()
    if kind == "huge_id":
        record["id"] = "x" * draw(st.integers(201, 100_000))
        return False, json.dumps(record).encode()
    if kind == "huge_comment":
        record["feedback"] = {"thumbs": "down", "comment": "y" * draw(st.integers(4001, 50_000))}
        return False, json.dumps(record).encode()
    if kind == "bad_utf8":
        text = json.dumps(record).encode()
        at = draw(st.integers(0, len(text)))
        return False, text[:at] + draw(
            st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c"])
        ) + text[at:]
    if kind == "binary":
        junk = draw(st.binary(min_size=1, max_size=200).filter(lambda b: b"\n" not in b and b.strip()))
        return False, junk
    value = draw(json_junk.filter(lambda v: not isinstance(v, dict) or "id" not in v))
    line = json.dumps(value).encode()
    return False, line


@st.composite
def log_file(draw):
    n = draw(st.integers(1, 12))
    lines = [draw(log_line(i)) for i in range(n)]
    duplicated = draw(st.lists(st.sampled_from(range(n)), max_size=3))
    return lines + [lines[i] for i in duplicated if lines[i][0]]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(lines=log_file())
def test_hostile_input_never_crashes_and_counts_reconcile(tmp_path_factory, lines):
    folder = tmp_path_factory.mktemp("prop")
    path = folder / "logs.jsonl"
    path.write_bytes(b"".join(line + b"\n" for _, line in lines))
    store = Store(f"sqlite:///{folder / 'store.db'}")
    report = ingest(store, [path], progress=False, masker=FAST)

    good_lines = {i for i, (good, _) in enumerate(lines, start=1) if good}
    distinct_good = len({line for good, line in lines if good})
    assert report.reconciles()
    assert report.read == len(lines)
    assert report.accepted == distinct_good
    assert report.duplicates == len(good_lines) - distinct_good
    assert report.quarantined == len(lines) - len(good_lines)
    quarantined = store.quarantine_frame()
    assert set(quarantined["line"]) == set(range(1, len(lines) + 1)) - good_lines
    assert all(len(reason) > 5 for reason in quarantined["reason"])
    assert store.count(interactions) == distinct_good


# --- a killed ingest, run again, ends where one clean run ends ---------------------------------------------

KILLABLE = textwrap.dedent(
    """
    import sys
    from flywheel.collect import ingest as m
    from flywheel.core.pii import PiiMasker
    from flywheel.core.store import Store

    m.BATCH_SIZE = 25
    store = Store(sys.argv[1])
    write = store.write_batch
    def write_and_tell(*args, **kwargs):
        result = write(*args, **kwargs)
        print("batch", flush=True)
        return result
    store.write_batch = write_and_tell
    m.ingest(store, [sys.argv[2]], progress=False, masker=PiiMasker(names=False))
    print("done", flush=True)
    """
)


def comparable(store: Store) -> dict:
    stamps = ["ingested_at", "quarantined_at"]
    return {
        "interactions": store.interactions_frame().drop(columns=stamps, errors="ignore").to_dict("records"),
        "quarantine": store.quarantine_frame().drop(columns=stamps, errors="ignore").to_dict("records"),
        "feedback": store.feedback_frame().drop(columns=stamps, errors="ignore").to_dict("records"),
    }


def test_killed_ingest_then_rerun_equals_one_clean_run(tmp_path):
    lines = []
    for i in range(400):
        lines.append(json.dumps(good_record(i)))
        if i % 37 == 0:
            lines.append('{"broken": ')
        if i % 53 == 0:
            lines.append(json.dumps(good_record(i)))  # a retrying logger
        if i % 41 == 0:
            lines.append(
                json.dumps(
                    {"interaction_id": f"ix-{i:06d}", "thumbs": "down", "timestamp": "2026-09-09T00:00:00Z"}
                )
            )
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    killed_url = f"sqlite:///{tmp_path / 'killed.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    proc = subprocess.Popen(
        [sys.executable, str(script), killed_url, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    batches = 0
    for out in proc.stdout:
        batches += out.startswith("batch")
        if batches == 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    killed = Store(killed_url)
    partial = killed.count(interactions)
    assert 0 < partial < 400

    rerun = subprocess.run(
        [sys.executable, str(script), killed_url, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert rerun.stdout.strip().endswith("done"), rerun.stderr[-2000:]
    clean = Store(f"sqlite:///{tmp_path / 'clean.db'}")
    report = ingest(clean, [path], progress=False, masker=PiiMasker(names=False))
    assert report.accepted == 400 + 10  # interactions and the feedback records
    assert comparable(Store(killed_url)) == comparable(clean)


def test_cli_ingest_prints_reconciling_counts(tmp_path):
    n = 3
    path = tmp_path / "logs.jsonl"
    path.write_text("".join(json.dumps(good_record(i)) + "\n" for i in range(n)) + "oops\n")
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flywheel.cli",
            "ingest",
            str(path),
            "--store",
            url,
            "--runs-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert {k: printed[k] for k in ("read", "accepted", "duplicates", "quarantined")} == {
        "read": n + 1,
        "accepted": n,
        "duplicates": 0,
        "quarantined": 1,
    }
