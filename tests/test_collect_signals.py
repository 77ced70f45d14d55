from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from conftest import good_record

from flywheel.collect.ingest import ingest
from flywheel.collect.signals import compute_signals, signal_summary
from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.embeddings import Embedder, embed
from flywheel.core.pii import PiiMasker

SIGNALS = load_config(REPO_ROOT / "configs" / "test.yaml").collect.signals
T0 = datetime(2026, 9, 8, 10, 0, tzinfo=UTC)


def record(i, session, minutes, text, comment=None, thumbs="down"):
    r = good_record(i, session_id=session, timestamp=(T0 + timedelta(minutes=minutes)).isoformat())
    r["request"]["messages"][-1]["content"] = text
    r["feedback"] = {"thumbs": thumbs, "comment": comment}
    return r


@pytest.fixture(scope="module")
def signals(tmp_path_factory):
    from flywheel.core.store import Store

    folder = tmp_path_factory.mktemp("signals")
    lines = [
        record(1, "s1", 0, "how do I reset my VPN password"),
        record(2, "s1", 2, "vpn password reset - how?"),  # rephrase of 1
        record(3, "s2", 0, "where is the parking garage"),
        record(4, "s2", 1, "how do I enroll in dental insurance"),  # other topic: nothing
        record(5, "s3", 0, "Can I expense a laptop?"),
        record(6, "s3", 1, "can i  expense a laptop"),  # retry of 5
        record(7, "s4", 0, "reset my vpn password"),
        record(8, "s4", 45, "how do I reset my vpn password?"),  # too late: nothing
        record(9, "s5", 0, "my payslip shows the wrong hours"),
        record(10, "s5", 3, "can I talk to a human please"),  # escalation of 9
        record(11, "s6", 0, "wifi broken", comment="useless, I need to speak with a real person"),
        record(12, "s7", 0, "badge not working", comment="someone told me to ask here"),  # not escalation
        record(13, "s8", 0, "how do I reset my VPN password"),  # same text, other session: nothing
    ]
    import json

    path = folder / "logs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    store = Store(f"sqlite:///{folder / 'store.db'}")
    ingest(store, [path], progress=False, masker=PiiMasker(names=False))
    compute_signals(store, SIGNALS)
    return store


def test_each_kind_is_found_on_the_right_interaction(signals):
    rows = signals.signals_frame().itertuples()
    found = {(r.interaction_id, r.kind, None if pd.isna(r.related_id) else r.related_id) for r in rows}
    assert found == {
        ("ix-000001", "rephrase", "ix-000002"),
        ("ix-000005", "retry", "ix-000006"),
        ("ix-000009", "escalation", "ix-000010"),
        ("ix-000011", "escalation", None),
    }


def test_rephrase_carries_its_similarity(signals):
    frame = signals.signals_frame().set_index("kind")
    assert SIGNALS.rephrase_similarity <= frame.loc["rephrase", "score"] < 1.0
    assert frame.loc["rephrase", "detail"] == "rephrased after 120 s"


def test_recomputing_replaces_rather_than_adds(signals):
    before = signals.signals_frame().drop(columns="computed_at")
    compute_signals(signals, SIGNALS)
    after = signals.signals_frame().drop(columns="computed_at")
    assert after.equals(before)


def test_a_cached_derivation_gives_the_same_signals_and_embeds_only_new_questions(signals, tmp_path):
    before = signals.signals_frame().drop(columns="computed_at")
    compute_signals(signals, SIGNALS, cache_dir=tmp_path)
    assert signals.signals_frame().drop(columns="computed_at").equals(before)
    cache = Embedder(SIGNALS.model, cache_dir=tmp_path)
    assert cache.cache_path.is_file() and len(cache._cache) >= 2  # the follow-up pairs' questions
    mtime = cache.cache_path.stat().st_mtime_ns
    compute_signals(signals, SIGNALS, cache_dir=tmp_path)  # nothing new: the cache is not written again
    assert cache.cache_path.stat().st_mtime_ns == mtime


def test_summary_counts_per_kind(signals):
    summary = signal_summary(signals)
    assert summary["interactions"].to_dict() == {"retry": 1, "rephrase": 1, "escalation": 2}


def test_embeddings_are_unit_vectors_in_input_order():
    texts = ["a much longer question about the vpn client on my laptop", "vpn", "parking"]
    vectors = embed(texts, SIGNALS.model)
    assert vectors.shape == (3, 384)
    assert abs(float((vectors**2).sum(axis=1).max()) - 1.0) < 1e-5
    again = embed(texts[::-1], SIGNALS.model)[::-1]
    assert abs(vectors - again).max() < 1e-5
