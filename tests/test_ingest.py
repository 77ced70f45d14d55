import json

import pandas as pd
from conftest import good_record

from flywheel.collect.ingest import ingest
from flywheel.store import interactions


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
    assert report.as_dict() == {"read": 8, "accepted": 2, "duplicates": 1, "quarantined": 5}
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
    assert second.as_dict() == {"read": 21, "accepted": 0, "duplicates": 20, "quarantined": 1}
    assert store.count(interactions) == 20
    assert len(store.quarantine_frame()) == 1  # the same bad line is quarantined once


def test_same_id_with_other_content_is_a_conflict_not_a_duplicate(store, write_jsonl):
    ingest(store, [write_jsonl("a.jsonl", [good_record(1)])], progress=False)
    changed = good_record(1, routed_expert="finance_earnings")
    report = ingest(store, [write_jsonl("b.jsonl", [changed, changed])], progress=False)
    assert report.as_dict() == {"read": 2, "accepted": 0, "duplicates": 1, "quarantined": 1}
    assert "other content" in store.quarantine_frame()["reason"].iloc[0]


def test_invalid_utf8_is_quarantined(store, tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(json.dumps(good_record(1)).encode() + b"\n\xff\xfe\x00junk\n")
    report = ingest(store, [path], progress=False)
    assert (report.accepted, report.quarantined) == (1, 1)
    assert store.quarantine_frame()["reason"].iloc[0].startswith("invalid UTF-8")


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
    masked = store.interactions_frame()["query_masked"].iloc[0]
    assert masked == "mail [EMAIL] or call [PHONE] about card [CARD]"
