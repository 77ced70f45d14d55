"""Ingestion of your own and of hostile data (issue 11, items 2, 9, 10, 14): records without token counts are
accepted with estimates; no record or file stops the others; re-runs are idempotent whatever the path
spelling; the quarantine keeps masked copies and hashes, never raw PII."""

import copy
import gzip
import hashlib
import json
import os

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import good_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel.collect.ingest import ingest, ingest_with_config
from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.pii import PiiMasker
from flywheel.core.store import Store, interactions, quarantine

FAST = PiiMasker(names=False)  # the NER pass has its own tests (test_pii.py)


def counts(report):
    return {k: report.as_dict()[k] for k in ("read", "accepted", "duplicates", "quarantined")}


def blueprint(i: int, usage: dict | None = None) -> dict:
    response = {
        "id": f"chatcmpl-{i}",
        "model": "meta/llama-3.1-70b-instruct",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hr_benefits"}}],
    }
    if usage is not None:
        response["usage"] = usage
    return {
        "timestamp": 1757325302 + i,
        "workload_id": "employee-router",
        "client_id": "hr-portal",
        "request": {
            "model": "meta/llama-3.1-70b-instruct",
            "messages": [
                {"role": "system", "content": "Route the question to one expert."},
                {"role": "user", "content": f"how much is the 401k match this year? ({i})"},
            ],
        },
        "response": response,
    }


# --- item 2: records without token counts ----------------------------------------------------------------


def test_records_without_token_counts_are_accepted_with_estimated_tokens(store, write_jsonl):
    no_usage = blueprint(1)
    null_usage = {**blueprint(2), "response": {**blueprint(2)["response"], "usage": None}}
    with_usage = blueprint(3, usage={"prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43})
    ours_without = {k: v for k, v in good_record(4).items() if k not in ("tokens_in", "tokens_out")}
    ours_null = good_record(5, tokens_in=None, tokens_out=None)
    ours_from_usage = good_record(6, tokens_in=None, tokens_out=None)
    ours_from_usage["response"] = {
        **ours_from_usage["response"],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2},
    }
    path = write_jsonl(
        "no_usage.jsonl", [no_usage, null_usage, with_usage, ours_without, ours_null, ours_from_usage]
    )

    report = ingest(store, [path], progress=False, masker=FAST)

    assert counts(report) == {"read": 6, "accepted": 6, "duplicates": 0, "quarantined": 0}
    assert report.tokens_estimated == 4
    stored = store.interactions_frame().set_index("id")
    estimated = stored[stored["tokens_estimated"]]
    assert sorted(estimated.index) == ["chatcmpl-1", "chatcmpl-2", "ix-000004", "ix-000005"]
    # counted with a real tokenizer: the system prompt and the question, plus the chat template's markers
    assert estimated["tokens_in"].between(10, 60).all()
    assert estimated.loc["chatcmpl-1", "tokens_out"] == estimated.loc["chatcmpl-2", "tokens_out"] > 0
    assert (
        stored.loc["chatcmpl-3", ["tokens_in", "tokens_out"]].tolist(),
        stored.loc["chatcmpl-3", "tokens_estimated"],
    ) == (
        [40, 3],
        False,
    )
    assert stored.loc["ix-000006", ["tokens_in", "tokens_out", "tokens_estimated"]].tolist() == [7, 2, False]
    # re-ingesting estimates the same: nothing new, nothing conflicting
    again = ingest(store, [path], progress=False, masker=FAST)
    assert counts(again) == {"read": 6, "accepted": 0, "duplicates": 6, "quarantined": 0}


def test_demo_records_keep_their_logged_tokens(tmp_path):
    """The demo logs usage for every record: nothing is estimated and its cost numbers stay as they were."""
    from flywheel.demo.generator import generate_demo

    config = load_config(REPO_ROOT / "configs" / "test.yaml")
    generate_demo(tmp_path / "demo", config.experts, n_interactions=150, weeks=2, seed=3)
    logs = tmp_path / "demo" / "logs.jsonl"
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    ingest(store, [logs], progress=False, masker=FAST)
    stored = store.interactions_frame().set_index("id")
    logged = {}
    for line in logs.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            logged[record["id"]] = (record.get("tokens_in"), record.get("tokens_out"))
    assert len(stored) > 100
    assert not stored["tokens_estimated"].any()
    assert {i: (r["tokens_in"], r["tokens_out"]) for i, r in stored.iterrows()} == {
        i: logged[i] for i in stored.index
    }


def test_a_store_from_before_gets_the_new_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the two tables as an older store has them
        conn.execute(
            sa.text(
                "CREATE TABLE quarantine (content_hash VARCHAR(64) PRIMARY KEY, source TEXT NOT NULL, "
                "line INTEGER, reason TEXT NOT NULL, raw TEXT NOT NULL, quarantined_at DATETIME NOT NULL)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO quarantine VALUES ('k1', 'old.jsonl', 3, 'invalid JSON', "
                "'{\"q\": \"mail jane.roe@corp.com\"', '2026-01-01 00:00:00')"
            )
        )
    store = Store(url)
    path = tmp_path / "logs.jsonl"
    path.write_text(json.dumps(blueprint(1)) + "\n")
    report = ingest(store, [path], progress=False, masker=FAST)
    assert report.accepted == 1
    old = store.quarantine_frame().set_index("content_hash").loc["k1"]
    assert "jane.roe" not in old["raw"] and "[EMAIL]" in old["raw"]  # scrubbed in place
    assert len(old["raw_sha256"]) == 64


# --- item 9: no record or file stops the others ------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([None, {"role": "user", "content": "vpn down"}], "messages[0] must be an object, got null"),
        (["hello", {"role": "user", "content": "vpn down"}], "messages[0] must be an object, got string"),
        ([{"role": "user", "content": {"text": "vpn"}}], "content must be a string or a list of parts"),
        ([{"role": "user", "content": [None]}], "content[0] must be an object with a string text"),
        ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "content[0] must be an object"),
        ([{"role": "user", "content": None}], "content must be a string or a list of parts, got null"),
    ],
)
def test_malformed_messages_are_quarantined_and_later_records_stored(store, write_jsonl, messages, reason):
    bad = good_record(2, request={"model": "m", "messages": messages})
    path = write_jsonl("logs.jsonl", [good_record(1), bad, good_record(3)])
    report = ingest(store, [path], progress=False, masker=FAST)
    assert counts(report) == {"read": 3, "accepted": 2, "duplicates": 0, "quarantined": 1}
    assert reason in store.quarantine_frame()["reason"].iloc[0]


def test_an_enormous_question_is_quarantined_with_a_reason_not_a_crash(store, write_jsonl):
    """Over spaCy's 1,000,000-character limit (E088), with names to find, through the real NER masker."""
    huge = good_record(2)
    huge["request"]["messages"][-1]["content"] = "Dana Smith asked about payroll. " * 32_000
    path = write_jsonl("logs.jsonl", [good_record(1), huge, good_record(3)])
    report = ingest(store, [path], progress=False, masker=PiiMasker())
    assert counts(report) == {"read": 3, "accepted": 2, "duplicates": 0, "quarantined": 1}
    reason = store.quarantine_frame()["reason"].iloc[0]
    assert "1024000 characters" in reason and "collect.max_query_chars (200000)" in reason


def test_the_question_limit_comes_from_the_config(tmp_path, write_jsonl):
    config = load_config(
        REPO_ROOT / "configs" / "test.yaml",
        {"collect": {"max_query_chars": 50, "pii": {"person_names": False}}},
    )
    long = good_record(2)
    long["request"]["messages"][-1]["content"] = "x" * 51
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    report = ingest_with_config(
        store, [write_jsonl("logs.jsonl", [good_record(1), long])], config, progress=False
    )
    assert (report.accepted, report.quarantined) == (1, 1)
    assert "over collect.max_query_chars (50)" in store.quarantine_frame()["reason"].iloc[0]


class FailsOn(PiiMasker):
    """A masker that raises on one text: stands for any bug or resource error inside masking."""

    def mask_many(self, texts, names=True):
        if any("BOOM" in t for t in texts):
            raise MemoryError("masking ran out of memory")
        return super().mask_many(texts, names=names)


def test_a_record_whose_masking_fails_is_quarantined_alone(store, write_jsonl):
    boom = good_record(2)
    boom["request"]["messages"][-1]["content"] = "BOOM"
    feedback = {"interaction_id": "ix-000001", "comment": "BOOM again", "timestamp": "2026-09-08T11:00:00Z"}
    path = write_jsonl("logs.jsonl", [good_record(1), boom, good_record(3), feedback])
    report = ingest(store, [path], progress=False, masker=FailsOn(names=False))
    assert counts(report) == {"read": 4, "accepted": 2, "duplicates": 0, "quarantined": 2}
    bad = store.quarantine_frame().set_index("line")
    assert set(bad.index) == {2, 4}
    assert bad["reason"].str.contains("MemoryError").all()
    assert (bad["raw"] == "").all()  # it could not be masked, so no copy is kept: only its hash
    assert sorted(store.interactions_frame()["id"]) == ["ix-000001", "ix-000003"]


def test_a_corrupt_parquet_file_is_quarantined_and_the_folder_still_ingests(store, tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"PAR1 this is not a parquet file PAR1")
    rows = [good_record(i) for i in range(3)]
    pd.DataFrame({k: [r[k] for r in rows] for k in rows[0]}).to_parquet(folder / "c.parquet")
    whole = (folder / "c.parquet").read_bytes()
    (folder / "d.parquet").write_bytes(whole[: len(whole) // 2])  # truncated
    (folder / "b.jsonl").write_text("".join(json.dumps(good_record(10 + i)) + "\n" for i in range(4)))

    report = ingest(store, [folder], progress=False, masker=FAST)

    assert counts(report) == {"read": 9, "accepted": 7, "duplicates": 0, "quarantined": 2}
    bad = store.quarantine_frame()
    assert sorted(os.path.basename(s) for s in bad["source"]) == ["a.parquet", "d.parquet"]
    assert bad["reason"].str.startswith("unreadable file from line 1 on").all()
    again = ingest(store, [folder], progress=False, masker=FAST)
    assert counts(again) == {"read": 9, "accepted": 0, "duplicates": 7, "quarantined": 2}
    assert len(store.quarantine_frame()) == 2


def test_a_record_the_store_refuses_is_quarantined_alone(store, write_jsonl):
    """A database constraint (here a trigger) refuses one row: the rest of its batch is still written."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON interactions WHEN NEW.id = 'ix-000002' "
            "BEGIN SELECT RAISE(ABORT, 'refused by policy'); END"
        )
    feedback = {"interaction_id": "ix-000001", "thumbs": "down", "timestamp": "2026-09-08T11:00:00Z"}
    path = write_jsonl("logs.jsonl", [good_record(1), good_record(2), good_record(3), feedback, "oops"])
    report = ingest(store, [path], progress=False, masker=FAST)
    assert counts(report) == {"read": 5, "accepted": 3, "duplicates": 0, "quarantined": 2}
    assert sorted(store.interactions_frame()["id"]) == ["ix-000001", "ix-000003"]
    bad = store.quarantine_frame().set_index("line")["reason"]
    assert bad[2] == "the store refused the record: IntegrityError" and bad[5].startswith("invalid JSON")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"id": 1' + b"0" * 5000 + b"}", "invalid JSON: Exceeds the limit"),  # Python's int digit limit
        (
            json.dumps(
                good_record(
                    9, request={"messages": [{"role": "user", "content": "x"}], "temperature": float("nan")}
                )
            ).encode(),
            "NaN, Infinity",
        ),
        (
            json.dumps(good_record(9)).replace('"latency_ms": 1380.5', '"latency_ms": 1e999').encode(),
            "NaN, Infinity",
        ),
        (
            json.dumps(good_record(9)).replace('"ttft_ms": 410.2', '"ttft_ms": 410.2, "x": [1e400]').encode(),
            "NaN, Infinity",
        ),
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
        (b'"just a string"', "must be a JSON object, got str"),
        (b"null", "must be a JSON object, got NoneType"),
    ],
)
def test_hostile_lines_are_quarantined_and_the_rest_stored(store, tmp_path, line, reason):
    path = tmp_path / "logs.jsonl"
    path.write_bytes(
        json.dumps(good_record(1)).encode() + b"\n" + line + b"\n" + json.dumps(good_record(2)).encode()
    )
    report = ingest(store, [path], progress=False, masker=FAST)
    assert counts(report) == {"read": 3, "accepted": 2, "duplicates": 0, "quarantined": 1}
    assert reason in store.quarantine_frame()["reason"].iloc[0]


def test_file_encodings_and_shapes(store, tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(
        b"\xef\xbb\xbf" + json.dumps(good_record(1)).encode() + b"\r\n" + json.dumps(good_record(2)).encode()
    )
    gz = tmp_path / "more.jsonl.gz"
    gz.write_bytes(gzip.compress(json.dumps(good_record(3)).encode() + b"\n"))
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes("\n".join(json.dumps(good_record(i)) for i in (4, 5)).encode("utf-16"))
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\n  \n\n")

    report = ingest(store, [bom, gz, utf16, empty, blank], progress=False, masker=FAST)

    assert counts(report) == {"read": 4, "accepted": 3, "duplicates": 0, "quarantined": 1}
    assert sorted(store.interactions_frame()["id"]) == ["ix-000001", "ix-000002", "ix-000003"]
    assert store.quarantine_frame()["reason"].iloc[0].startswith("UTF-16 text")


def test_a_folder_with_a_dangling_link_and_a_truncated_gzip(store, tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "ghost.jsonl").symlink_to(tmp_path / "gone.jsonl")
    data = gzip.compress("".join(json.dumps(good_record(i)) + "\n" for i in range(50)).encode())
    (folder / "cut.jsonl.gz").write_bytes(data[: len(data) - 20])
    (folder / "ok.jsonl").write_text(json.dumps(good_record(99)) + "\n")
    report = ingest(store, [folder], progress=False, masker=FAST)
    assert report.reconciles()
    assert "ix-000099" in set(store.interactions_frame()["id"])
    bad = store.quarantine_frame().set_index(store.quarantine_frame()["source"].map(os.path.basename))
    assert "FileNotFoundError" in bad.loc["ghost.jsonl", "reason"]
    assert bad.loc["cut.jsonl.gz", "reason"].startswith("unreadable file from line")


# Any value anywhere in a record: ingestion never raises and every line is accounted for.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*prefix, i))


@st.composite
def mangled_record(draw):
    record = draw(
        st.sampled_from(
            [
                good_record(7),
                blueprint(7),
                {"interaction_id": "ix-000001", "thumbs": "up", "timestamp": "2026-09-08T11:00:00Z"},
            ]
        )
    )
    record = copy.deepcopy(record)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(record))[1:]))
        parent = record
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = draw(JSON_VALUES)
    return record


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(records=st.lists(mangled_record(), min_size=1, max_size=6))
def test_records_mangled_anywhere_never_stop_ingestion(tmp_path_factory, records):
    folder = tmp_path_factory.mktemp("mangled")
    path = folder / "logs.jsonl"
    lines = [json.dumps(r, allow_nan=True) for r in records] + [json.dumps(good_record(1))]
    path.write_text("\n".join(lines) + "\n")
    store = Store(f"sqlite:///{folder / 'store.db'}")
    report = ingest(store, [path], progress=False, masker=FAST)
    assert report.reconciles() and report.read == len(lines)
    assert "ix-000001" in set(store.interactions_frame()["id"]) or report.duplicates + report.quarantined >= 1
    assert len(store.quarantine_frame()) == report.quarantined  # each bad line has its row
    again = ingest(store, [path], progress=False, masker=FAST)
    assert (again.accepted, again.quarantined) == (0, report.quarantined)


# --- item 10: idempotent whatever the order and the path spelling -----------------------------------------


def test_a_stored_record_after_a_conflicting_one_is_a_duplicate(store, write_jsonl):
    a = good_record(1)
    b = good_record(1, routed_expert="finance_earnings")  # same id, other content
    ingest(store, [write_jsonl("a.jsonl", [a])], progress=False, masker=FAST)
    report = ingest(store, [write_jsonl("ba.jsonl", [b, a])], progress=False, masker=FAST)
    assert counts(report) == {"read": 2, "accepted": 0, "duplicates": 1, "quarantined": 1}
    bad = store.quarantine_frame()
    assert bad["line"].tolist() == [1] and "other content" in bad["reason"].iloc[0]
    assert store.interactions_frame().set_index("id").loc["ix-000001", "routed_expert"] == "it_help"


def test_reingesting_under_another_path_spelling_adds_no_quarantine_rows(store, tmp_path, monkeypatch):
    path = tmp_path / "f.jsonl"
    path.write_text(
        json.dumps(good_record(1)) + "\nnot json\n" + json.dumps(good_record(1, user_id="u-9")) + "\n"
    )
    monkeypatch.chdir(tmp_path)
    first = ingest(store, [path], progress=False, masker=FAST)
    for spelling in ("./f.jsonl", "f.jsonl", str(tmp_path / "." / "f.jsonl"), tmp_path):
        again = ingest(store, [spelling], progress=False, masker=FAST)
        assert counts(again) == {"read": 3, "accepted": 0, "duplicates": 1, "quarantined": 2}
    assert counts(first) == {"read": 3, "accepted": 1, "duplicates": 0, "quarantined": 2}
    assert len(store.quarantine_frame()) == 2
    assert set(store.quarantine_frame()["source"]) == {str(path.resolve())}


# --- item 14: the quarantine keeps no raw PII; one masker with the config's settings ------------------------


def test_the_quarantine_keeps_a_masked_copy_and_a_hash_never_the_raw_line(tmp_path):
    config = load_config(
        REPO_ROOT / "configs" / "test.yaml",
        {"collect": {"pii": {"employee_id_pattern": r"\bACME-\d{4}\b", "person_names": False}}},
    )
    secret = "mail jane.doe@corp.com, card 4111 1111 1111 1111, call +1 408-555-0199, badge ACME-4321"
    broken = '{"id": "ix-1", "note": "' + secret + '", "timestamp": '  # truncated JSON
    invalid = json.dumps(good_record(2, latency_ms="slow", answer_excerpt=secret))
    feedback = {"interaction_id": "ix-000003", "comment": secret, "timestamp": "2026-09-08T11:00:00Z"}
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join([broken, invalid, json.dumps(good_record(3)), json.dumps(feedback)]) + "\n")
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")

    report = ingest_with_config(store, [path], config, progress=False)

    assert counts(report) == {"read": 4, "accepted": 2, "duplicates": 0, "quarantined": 2}
    bad = store.quarantine_frame().set_index("line")
    with store.engine.connect() as conn:
        dumped = "\n".join(str(v) for row in conn.execute(sa.select(quarantine)) for v in row)
    for leak in ("jane.doe", "4111 1111", "555-0199", "ACME-4321"):
        assert leak not in dumped
    for placeholder in ("[EMAIL]", "[CARD]", "[PHONE]", "[EMPLOYEE_ID]"):
        assert placeholder in bad.loc[1, "raw"] and placeholder in bad.loc[2, "raw"]
    lines = path.read_bytes().split(b"\n")
    assert bad.loc[1, "raw_sha256"] == hashlib.sha256(lines[0]).hexdigest()
    assert bad.loc[2, "raw_sha256"] == hashlib.sha256(lines[1]).hexdigest()
    # the separate feedback's comment went through the same configured masker
    comment = store.interactions_frame().set_index("id").loc["ix-000003", "comment"]
    assert "[EMPLOYEE_ID]" in comment and "ACME" not in comment
    with store.engine.connect() as conn:
        stored = "\n".join(str(v) for row in conn.execute(sa.select(interactions)) for v in row)
    assert "ACME-4321" not in stored


def test_every_message_of_a_conversation_is_masked_not_only_the_user_turns(store, write_jsonl):
    """A multi-turn request: PII in the system prompt, an earlier assistant turn and a content-parts user
    message is masked in the stored request; the query is still the last user message."""
    messages = [
        {"role": "system", "content": "escalations go to ops-lead@corp.com"},
        {"role": "user", "content": "my card 4111 1111 1111 1111 was charged twice"},
        {"role": "assistant", "content": "I have forwarded it; call +1 408-555-0199 if it happens again"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
        {"role": "user", "content": [{"type": "text", "text": "and mail me at jane.doe@corp.com"}]},
    ]
    record = good_record(1, request={"model": "llama-3.1-70b-instruct", "messages": messages})
    ingest(store, [write_jsonl("logs.jsonl", [record])], progress=False, masker=FAST)
    row = store.interactions_frame().iloc[0]
    for leak in ("ops-lead@", "4111 1111", "555-0199", "jane.doe"):
        assert leak not in row["request_json"]
    stored = json.loads(row["request_json"])["messages"]
    assert stored[0]["content"] == "escalations go to [EMAIL]"
    assert stored[3] == messages[3]  # a turn without text is kept as it was
    assert row["query_masked"] == "and mail me at [EMAIL]"


def test_quarantine_reasons_quote_no_pii(store, write_jsonl):
    a = good_record(1, id="jane.doe@corp.com")
    b = good_record(1, id="jane.doe@corp.com", routed_expert="facilities")
    ingest(store, [write_jsonl("logs.jsonl", [a, b])], progress=False, masker=FAST)
    reason = store.quarantine_frame()["reason"].iloc[0]
    assert "jane.doe" not in reason and "[EMAIL]" in reason


# --- throughput: worker processes change nothing but the speed ---------------------------------------------


def test_worker_processes_store_exactly_what_one_process_stores(tmp_path, monkeypatch):
    from flywheel.collect import ingest as ingest_module

    monkeypatch.setattr(ingest_module, "BATCH_SIZE", 40)  # many batches in flight, written in file order
    lines = []
    for i in range(300):
        lines.append(json.dumps(good_record(i % 250, user_id=f"u-{i}" if i % 97 == 0 else "u-0007")))
        if i % 31 == 0:
            lines.append('{"broken": ')
        if i % 43 == 0:
            fb = {
                "interaction_id": f"ix-{i:06d}",
                "comment": "call 408-555-0123",
                "timestamp": "2026-09-09T00:00:00Z",
            }
            lines.append(json.dumps(fb))
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join(lines) + "\n")

    def run(workers: int) -> tuple[dict, dict]:
        store = Store(f"sqlite:///{tmp_path / f'w{workers}.db'}")
        report = ingest(store, [path], progress=False, masker=FAST, workers=workers).as_dict()
        stamps = ["ingested_at", "quarantined_at"]
        tables = {
            "interactions": store.interactions_frame().drop(columns=stamps, errors="ignore"),
            "quarantine": store.quarantine_frame().drop(columns=stamps, errors="ignore"),
            "feedback": store.feedback_frame().drop(columns=stamps, errors="ignore"),
        }
        return report, {name: frame.to_dict("records") for name, frame in tables.items()}

    one, two = run(0), run(2)
    assert one[0]["quarantined"] > 0 and one[0]["duplicates"] > 0 and one[0]["feedback"] > 0
    assert (one[0].pop("workers"), two[0].pop("workers")) == (0, 2)
    assert one == two
