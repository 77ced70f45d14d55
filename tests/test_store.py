"""The store on both backends: SQLite (a file) and PostgreSQL (a throwaway local server, see pgcluster.py).
In CI (CI=true) a missing PostgreSQL fails the tests instead of skipping them."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import good_record

from flywheel.collect.ingest import ingest
from flywheel.core import migrations
from flywheel.core.rows import content_hash, to_row
from flywheel.core.schema import Interaction
from flywheel.core.store import IN_CHUNK, Store, feedback, interactions, quarantine, reviews


def row(i, **overrides):
    record = good_record(i, **overrides)
    return to_row(Interaction.model_validate(record), content_hash(record), "test")


def test_backend_is_the_one_asked_for(any_store, request):
    assert any_store.dialect == request.node.callspec.params["any_store"]


def test_inserts_are_idempotent_by_key(any_store):
    assert any_store.add_interactions([row(1), row(2), row(1)]) == 2
    assert any_store.add_interactions([row(1), row(3)]) == 1
    assert any_store.count(interactions) == 3
    assert any_store.hashes_for_ids(["ix-000001", "ix-999999"]) == {"ix-000001": row(1)["content_hash"]}


def test_chunked_in_queries_cover_more_keys_than_one_chunk(any_store):
    n = IN_CHUNK * 2 + 7
    assert any_store.add_interactions([row(i) for i in range(n)]) == n
    found = any_store.hashes_for_ids([f"ix-{i:06d}" for i in range(n + 50)])
    assert len(found) == n
    assert any_store.add_interactions([row(i) for i in range(n)]) == 0


def test_reviews_keyed_by_interaction_and_reviewer(any_store):
    any_store.add_interactions([row(1)])
    answer = {
        "interaction_id": "ix-000001",
        "reviewer": "r1",
        "correct_expert": "facilities",
        "cause": "routing",
        "origin": "simulated",
        "reviewed_at": datetime.now(UTC),
    }
    assert any_store.add_reviews([answer, {**answer, "reviewer": "r2"}]) == 2
    assert any_store.add_reviews([answer]) == 0
    assert any_store.count(reviews) == 2
    assert any_store.reviews_frame()["reviewer"].tolist() == ["r1", "r2"]
    assert any_store.reviews_frame()["task"].tolist() == ["triage", "triage"]


def test_one_reviewer_answers_an_interaction_in_both_tasks_once_each(any_store):
    any_store.add_interactions([row(1)])
    answer = {
        "interaction_id": "ix-000001",
        "reviewer": "r1",
        "correct_expert": "facilities",
        "cause": "routing",
        "origin": "argilla",
        "reviewed_at": datetime.now(UTC),
    }
    audit = {**answer, "cause": None, "correct_expert": "it_help"}
    assert any_store.add_reviews([answer]) == 1
    assert any_store.add_reviews([audit], task="audit") == 1
    assert any_store.add_reviews([audit], task="audit") == 0
    assert any_store.add_reviews([{**audit, "task": "audit"}]) == 0  # a row's own task wins
    frame = any_store.reviews_frame()
    assert frame[["task", "correct_expert"]].values.tolist() == [
        ["audit", "it_help"],
        ["triage", "facilities"],
    ]
    assert any_store.reviews_frame(task="audit")["cause"].isna().tolist() == [True]
    assert any_store.reviews_frame(task="triage")["cause"].tolist() == ["routing"]
    assert str(frame["reviewed_at"].dt.tz) == "UTC"
    with pytest.raises(ValueError, match="unknown review task"):
        any_store.add_reviews([answer], task="vibes")


def test_audit_items_keep_their_first_split(any_store):
    any_store.add_interactions([row(1), row(2)])
    when = datetime(2026, 9, 14, tzinfo=UTC)
    first = [
        {"interaction_id": "ix-000001", "split": "test", "cycle_id": "c1", "sampled_at": when},
        {"interaction_id": "ix-000002", "split": "validation", "cycle_id": "c1", "sampled_at": when},
    ]
    assert any_store.audit_frame().columns.tolist() == ["interaction_id", "split", "cycle_id", "sampled_at"]
    assert any_store.add_audit_items(first) == 2
    later = {"interaction_id": "ix-000001", "split": "validation", "cycle_id": "c2", "sampled_at": when}
    assert any_store.add_audit_items([later]) == 0
    frame = any_store.audit_frame()
    assert frame[["interaction_id", "split", "cycle_id"]].values.tolist() == [
        ["ix-000001", "test", "c1"],
        ["ix-000002", "validation", "c1"],
    ]
    assert frame["sampled_at"].iloc[0] == when
    with pytest.raises(ValueError, match="unknown audit split"):
        any_store.add_audit_items([{**later, "split": "train"}])


def test_frames_roundtrip_types(any_store):
    any_store.add_interactions([row(1), row(2, latency_ms=None)])
    frame = any_store.interactions_frame()
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["timestamp"].iloc[0] == datetime(2026, 9, 8, 10, 15, 2, tzinfo=UTC)
    assert frame["satisfied"].tolist() == [True, True]
    assert frame["query_masked"].tolist() == ["vpn down 1", "vpn down 2"]
    assert frame["latency_ms"].iloc[0] == 1380.5
    assert frame["latency_ms"].isna().tolist() == [False, True]
    assert frame["tokens_in"].tolist() == [212, 212]


def test_feedback_joins_newest_first_whatever_the_order(any_store):
    any_store.add_interactions([row(1)])
    base = datetime(2026, 9, 9, tzinfo=UTC)

    def fb(key, thumbs, minutes, interaction="ix-000001"):
        return {
            "content_hash": key,
            "interaction_id": interaction,
            "timestamp": base + timedelta(minutes=minutes),
            "thumbs": thumbs,
            "rating": None,
            "comment": None,
            "satisfied": thumbs == "up",
            "source": "fb.jsonl",
            "ingested_at": datetime.now(UTC),
            "applied": False,
        }

    any_store.write_batch(feedback_rows=[fb("b", "down", 5)])
    assert any_store.apply_feedback() == 1
    any_store.write_batch(feedback_rows=[fb("a", "up", 1), fb("c", "down", 2, interaction="ix-000002")])
    any_store.apply_feedback()
    stored = any_store.interactions_frame()
    assert stored["thumbs"].tolist() == ["down"]  # the later record (5 min) wins over the earlier (1 min)
    assert stored["satisfied"].tolist() == [False]
    pending = any_store.feedback_frame().set_index("content_hash")["applied"]
    assert pending.to_dict() == {"a": True, "b": True, "c": False}  # ix-000002 is not stored yet
    any_store.add_interactions([row(2)])
    assert any_store.apply_feedback() == 1
    assert any_store.interactions_frame().set_index("id").loc["ix-000002", "thumbs"] == "down"


def test_cycle_marks_and_feedback_since(any_store):
    any_store.add_interactions([row(1), row(2, feedback=None)])
    assert any_store.last_cycle_mark() is None
    assert any_store.feedback_since(None) == 1
    mark = any_store.mark_cycle("cycle-1")
    assert any_store.last_cycle_mark()["cycle_id"] == "cycle-1"
    assert any_store.last_cycle_mark()["data_until"] == datetime(2026, 9, 8, 10, 15, 2, tzinfo=UTC)
    assert mark["with_feedback"] == 1
    assert any_store.feedback_since(any_store.last_cycle_mark()["marked_at"]) == 0
    any_store.add_interactions([row(3)])
    assert any_store.feedback_since(any_store.last_cycle_mark()["marked_at"]) == 1


def test_ingestion_of_hostile_records_gives_the_same_counts_on_both_backends(any_store, write_jsonl):
    """Text PostgreSQL cannot hold (NUL, lone surrogates), integers past 32 bits, long ids and blueprint
    and feedback records: quarantined or stored, never a crash."""
    lines = [
        good_record(1),
        json.dumps(good_record(2, session_id="a\u0000b")),
        json.dumps(good_record(3, user_id="\ud800")),
        good_record(4, tokens_in=2**40),
        good_record(5, id="x" * 201),
        good_record(6, model="m" * 200),
        {"interaction_id": "ix-000001", "thumbs": "down", "timestamp": "2026-09-09T00:00:00Z"},
        {
            "timestamp": 1757000000,
            "workload_id": "router",
            "client_id": "team-a",
            "request": {"model": "m", "messages": [{"role": "user", "content": "vpn?"}]},
            "response": {"id": "cmpl-1", "choices": [{"message": {"content": "it_help"}}], "usage": {}},
        },
        b"\x00\xff binary".decode("latin-1"),
    ]
    report = ingest(any_store, [write_jsonl("hostile.jsonl", lines)], progress=False)
    assert report.as_dict() == {
        "read": 9,
        "accepted": 4,
        "duplicates": 0,
        "quarantined": 5,
        "feedback": 1,
        "feedback_joined": 1,
        "tokens_estimated": 1,
        "files": 1,
        "workers": 0,
    }
    assert any_store.count(quarantine) == 5
    assert any_store.count(feedback) == 1
    stored = any_store.interactions_frame().set_index("id")
    assert sorted(stored.index) == ["cmpl-1", "ix-000001", "ix-000006"]
    assert stored.loc["cmpl-1", "tokens_estimated"]  # the blueprint record has no usage: estimated
    reasons = any_store.quarantine_frame().set_index("line")["reason"]
    assert "NUL" in reasons[2]
    assert "surrogate" in reasons[3]
    assert "tokens_in" in reasons[4]


def test_reopening_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    Store(url).add_interactions([row(1)])
    assert Store(url).count(interactions) == 1


def _open_store(url: str, start) -> str:
    start.wait()
    Store(url).count(interactions)
    return "ok"


def test_processes_opening_one_fresh_store_at_once_all_succeed(any_store, request, tmp_path):
    """A service and an ingest may open a store that does not exist yet at the same moment: one of them
    migrates it, the others wait for it and find it done."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for attempt in range(3):
        if any_store.dialect == "sqlite":
            url = f"sqlite:///{tmp_path / f'fresh-{attempt}.db'}"
        else:
            url = request.getfixturevalue("pg_cluster").create_database()
        with context.Manager() as manager:
            start = manager.Barrier(4)
            with context.Pool(4) as pool:
                results = [pool.apply_async(_open_store, (url, start)) for _ in range(4)]
                assert [r.get(timeout=120) for r in results] == ["ok"] * 4
        probe = Store(url)
        with probe.engine.connect() as conn:
            assert migrations.current(conn) == migrations.head()
        probe.engine.dispose()
