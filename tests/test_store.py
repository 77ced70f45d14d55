from datetime import UTC, datetime

from conftest import good_record

from flywheel.collect.ingest import content_hash, to_row
from flywheel.schema import Interaction
from flywheel.store import Store, interactions, reviews


def row(i):
    record = good_record(i)
    return to_row(Interaction.model_validate(record), content_hash(record), "test")


def test_inserts_are_idempotent_by_key(store):
    assert store.add_interactions([row(1), row(2), row(1)]) == 2
    assert store.add_interactions([row(1), row(3)]) == 1
    assert store.count(interactions) == 3
    assert store.hashes_for_ids(["ix-000001", "ix-999999"]) == {"ix-000001": row(1)["content_hash"]}


def test_reviews_keyed_by_interaction_and_reviewer(store):
    store.add_interactions([row(1)])
    answer = {
        "interaction_id": "ix-000001",
        "reviewer": "r1",
        "correct_expert": "facilities",
        "cause": "routing",
        "origin": "simulated",
        "reviewed_at": datetime.now(UTC),
    }
    assert store.add_reviews([answer, {**answer, "reviewer": "r2"}]) == 2
    assert store.add_reviews([answer]) == 0
    assert store.count(reviews) == 2
    assert store.reviews_frame()["reviewer"].tolist() == ["r1", "r2"]


def test_frames_roundtrip_types(store):
    store.add_interactions([row(1)])
    frame = store.interactions_frame()
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["satisfied"].tolist() == [True]
    assert frame["query_masked"].tolist() == ["vpn down 1"]


def test_reopening_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    Store(url).add_interactions([row(1)])
    assert Store(url).count(interactions) == 1
