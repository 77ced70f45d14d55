"""Makes tests/data/pre_alembic_store.db.gz: a store and registry written by the code from before Alembic
(commit a652528, whose `Store` made its tables with `metadata.create_all`). Kept to show how the fixture
was made; run it with that commit's library first on the path:

    PYTHONPATH=<checkout of a652528>/lib .venv/bin/python tests/data/make_pre_alembic_store.py OUT.db.gz
"""

import gzip
import json
import shutil
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from flywheel.registry import Registry
from flywheel.store import Store

from flywheel.collect.ingest import ingest
from flywheel.demo.generator import generate_demo

EXPERTS = {"hr_benefits": "benefits", "it_help": "laptops", "facilities": "badges"}

out = Path(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    generate_demo(tmp / "world", EXPERTS, n_interactions=30, weeks=1, seed=11)
    lines = (tmp / "world" / "logs.jsonl").read_text().splitlines()[:12]
    logs = tmp / "logs.jsonl"
    logs.write_text("\n".join([*lines, '{"id": "broken"']) + "\n")  # the last line is quarantined
    db = tmp / "store.db"
    store = Store(f"sqlite:///{db}")
    ingest(store, [logs], progress=False)
    first = json.loads(lines[0])["id"]
    store.add_reviews(
        [
            {
                "interaction_id": first,
                "reviewer": "expert-1",
                "correct_expert": "it_help",
                "cause": "routing",
                "origin": "test",
                "reviewed_at": datetime(2026, 9, 14, 9, 30, tzinfo=UTC),
            }
        ]
    )
    store.mark_cycle("20260914-000000-fixture")
    candidate = tmp / "candidate-a"
    candidate.mkdir()
    (candidate / "candidate.json").write_text(json.dumps({"name": "tfidf-a"}))
    registry = Registry(store)
    registry.promote(candidate, reason="fixture promotion", metrics={"accuracy": 0.9}, cycle_id="c1")
    registry.rollback(reason="fixture rollback")
    store.engine.dispose()
    with sqlite3.connect(db) as conn:  # one self-contained file: no WAL beside it
        conn.execute("PRAGMA journal_mode = DELETE")
    with open(db, "rb") as raw, gzip.open(out, "wb") as packed:
        shutil.copyfileobj(raw, packed)
print(out, out.stat().st_size)
