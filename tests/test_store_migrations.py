"""The store's schema under Alembic: a fresh store, a store written before Alembic (a fixture made by the
code of commit a652528, see tests/data/make_pre_alembic_store.py) and one made by `metadata.create_all` as
that code did, on SQLite and PostgreSQL."""

import gzip
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from flywheel.core import migrations
from flywheel.core.registry import Registry
from flywheel.core.store import Store, interactions, metadata

PRE_ALEMBIC_STORE = Path(__file__).parent / "data" / "pre_alembic_store.db.gz"
TABLES = [
    "audit_items",
    "cycle_marks",
    "feedback",
    "implicit_signals",
    "interactions",
    "promotions",
    "quarantine",
    "review_selections",
    "reviews",
    "shadow_decisions",
]


def schema_of(engine: sa.Engine) -> dict:
    """Everything inspection tells about the store's tables, comparable across databases."""
    inspector = sa.inspect(engine)
    schema = {}
    for table in inspector.get_table_names():
        if table == "alembic_version":
            continue
        schema[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), i["unique"]) for i in inspector.get_indexes(table)
            ),
            "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(table)
            ),
        }
    return schema


def differences_from_metadata(engine: sa.Engine) -> list:
    """What `alembic revision --autogenerate` would write to bring the database to the code's tables."""
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


def revision_of(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return migrations.current(conn)


def rows_of(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of the store's tables that exist."""
    present = set(sa.inspect(engine).get_table_names())
    with engine.connect() as conn:
        return {
            table: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {table}"))), key=repr)
            for table in TABLES
            if table in present
        }


@pytest.fixture
def new_database(request, tmp_path):
    """Makes empty databases on the test's backend; returns their URLs."""
    names = iter(range(100))

    def make() -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / f'store-{next(names)}.db'}"
        return request.getfixturevalue("pg_cluster").create_database()

    return make


@pytest.fixture
def fresh_url(new_database):
    return new_database()


backends = pytest.mark.parametrize("new_database", ["sqlite", "postgresql"], indirect=True)


@backends
def test_a_fresh_store_is_at_head_and_has_the_tables_the_code_queries(fresh_url):
    store = Store(fresh_url)
    assert revision_of(store.engine) == migrations.head()
    assert sorted(schema_of(store.engine)) == TABLES
    assert differences_from_metadata(store.engine) == []


@backends
def test_a_store_made_before_alembic_is_adopted_with_its_rows_and_the_fresh_schema(fresh_url, new_database):
    """Today's main made its tables with `metadata.create_all` (the registry's only once it was used)."""
    old = sa.create_engine(fresh_url)
    # a store whose registry was never used has no `promotions` table yet; `audit_items` came later
    metadata.create_all(
        old, tables=[t for name, t in metadata.tables.items() if name not in ("promotions", "audit_items")]
    )
    with old.begin() as conn:
        conn.execute(
            interactions.insert(),
            [
                {
                    "id": "ix-1",
                    "content_hash": "h1",
                    "timestamp": datetime(2026, 9, 8, 10, tzinfo=UTC),
                    "session_id": "s",
                    "user_id": "u",
                    "query": "vpn down",
                    "query_masked": "vpn down",
                    "routed_expert": "it_help",
                    "model": "m",
                    "tokens_in": 1,
                    "tokens_out": 1,
                    "request_json": "{}",
                    "response_json": "{}",
                    "source": "old",
                    "ingested_at": datetime(2026, 9, 8, 11, tzinfo=UTC),
                }
            ],
        )
    assert revision_of(old) is None
    old.dispose()

    store = Store(fresh_url)
    assert revision_of(store.engine) == migrations.head()
    assert store.interactions_frame()["id"].tolist() == ["ix-1"]
    assert schema_of(store.engine) == schema_of(Store(new_database()).engine)
    assert differences_from_metadata(store.engine) == []


def test_the_store_written_by_the_code_before_alembic_upgrades_and_reads_the_same_rows(tmp_path):
    path = tmp_path / "old.db"
    with gzip.open(PRE_ALEMBIC_STORE) as packed, open(path, "wb") as raw:
        shutil.copyfileobj(packed, raw)
    url = f"sqlite:///{path}"
    before = rows_of(sa.create_engine(url))
    assert revision_of(sa.create_engine(url)) is None
    assert len(before["interactions"]) == 11 and len(before["quarantine"]) == 1
    assert len(before["promotions"]) == 2 and len(before["reviews"]) == 1
    assert "audit_items" not in before

    store = Store(url)
    assert revision_of(store.engine) == migrations.head()
    # revision 0002 made the old answers triage answers and added the (empty) audit table
    before["reviews"] = [(*row, "triage") for row in before["reviews"]]
    before["audit_items"] = []
    before["review_selections"] = before["shadow_decisions"] = []  # revision 0003: empty new tables
    assert rows_of(store.engine) == before
    registry = Registry(store)
    assert [(e.event, e.model_name) for e in registry.history()] == [
        ("promote", "tfidf-a"),
        ("production", "production"),
    ]
    assert registry.state().on_production
    assert store.last_cycle_mark()["interactions"] == 11
    assert schema_of(store.engine) == schema_of(Store(f"sqlite:///{tmp_path / 'fresh.db'}").engine)
    assert differences_from_metadata(store.engine) == []
    with sqlite3.connect(path) as conn:  # and SQLite finds the upgraded file sound
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@backends
def test_downgrade_to_nothing_and_upgrade_again_gives_the_same_schema(fresh_url):
    store = Store(fresh_url)
    schema = schema_of(store.engine)
    with store.engine.begin() as conn:
        command.downgrade(migrations.alembic_config(conn), "base")
    assert schema_of(store.engine) == {}
    migrations.upgrade(store.engine)
    assert schema_of(store.engine) == schema


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    """The schema changes inside the migration's transaction (SQLite and PostgreSQL both roll DDL back): a
    half-made store never stays behind. Here the creation of the last table fails."""
    from alembic.operations import Operations

    real_create_table = Operations.create_table
    created = []

    def create_table(self, name, *columns, **kw):
        if name == "promotions":
            raise RuntimeError("disk full")
        created.append(name)
        return real_create_table(self, name, *columns, **kw)

    monkeypatch.setattr(Operations, "create_table", create_table)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with pytest.raises(RuntimeError, match="disk full"):
        migrations.upgrade(engine)
    assert "interactions" in created
    assert sa.inspect(engine).get_table_names() == []


def at_revision(url: str, revision: str) -> sa.Engine:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrations.alembic_config(conn), revision)
    return engine


def an_interaction(i: int) -> dict:
    return {
        "id": f"ix-{i}",
        "content_hash": f"h{i}",
        "timestamp": datetime(2026, 9, 8, 10, tzinfo=UTC),
        "session_id": "s",
        "user_id": "u",
        "query": "vpn down",
        "query_masked": "vpn down",
        "routed_expert": "it_help",
        "model": "m",
        "tokens_in": 1,
        "tokens_out": 1,
        "request_json": "{}",
        "response_json": "{}",
        "source": "old",
        "ingested_at": datetime(2026, 9, 8, 11, tzinfo=UTC),
    }


@backends
def test_revision_0002_keeps_a_0001_stores_reviews_as_triage_answers(fresh_url, new_database):
    """The reviews of a 0001 store become triage answers; after it, the same reviewer may also answer the
    same interaction in the audit (without a cause)."""
    old = at_revision(fresh_url, "0001")
    answer = {
        "interaction_id": "ix-1",
        "reviewer": "alice",
        "correct_expert": "it_help",
        "cause": "routing",
        "origin": "argilla",
        "reviewed_at": datetime(2026, 9, 9, tzinfo=UTC),
    }
    with old.begin() as conn:
        conn.execute(interactions.insert(), [an_interaction(1)])
        conn.execute(
            sa.text(
                "INSERT INTO reviews (interaction_id, reviewer, correct_expert, cause, origin, reviewed_at) "
                "VALUES (:interaction_id, :reviewer, :correct_expert, :cause, :origin, :reviewed_at)"
            ),
            [answer],
        )
    assert revision_of(old) == "0001"
    old.dispose()

    store = Store(fresh_url)
    assert revision_of(store.engine) == migrations.head()
    frame = store.reviews_frame()
    assert frame[["interaction_id", "reviewer", "cause", "task"]].values.tolist() == [
        ["ix-1", "alice", "routing", "triage"]
    ]
    assert store.add_reviews([answer]) == 0  # the migrated row keeps its key: still idempotent
    audit = {**answer, "cause": None, "correct_expert": "facilities"}
    assert store.add_reviews([audit], task="audit") == 1
    assert store.reviews_frame(task="audit")["cause"].isna().all()
    assert schema_of(store.engine) == schema_of(Store(new_database()).engine)
    assert differences_from_metadata(store.engine) == []


@backends
def test_downgrade_to_0001_keeps_the_triage_answers_and_drops_the_audit(fresh_url):
    store = Store(fresh_url)
    with store.engine.begin() as conn:
        conn.execute(interactions.insert(), [an_interaction(1)])
    answer = {
        "interaction_id": "ix-1",
        "reviewer": "alice",
        "correct_expert": "it_help",
        "cause": "routing",
        "origin": "argilla",
        "reviewed_at": datetime(2026, 9, 9, tzinfo=UTC),
    }
    store.add_reviews([answer])
    store.add_reviews([{**answer, "cause": None}], task="audit")
    store.add_audit_items(
        [
            {
                "interaction_id": "ix-1",
                "split": "test",
                "cycle_id": "c1",
                "sampled_at": datetime(2026, 9, 9, tzinfo=UTC),
            }
        ]
    )
    with store.engine.begin() as conn:
        command.downgrade(migrations.alembic_config(conn), "0001")
    assert "audit_items" not in sa.inspect(store.engine).get_table_names()
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT interaction_id, reviewer, cause FROM reviews")).all()
    assert [tuple(r) for r in rows] == [("ix-1", "alice", "routing")]
    assert sa.inspect(store.engine).get_pk_constraint("reviews")["constrained_columns"] == [
        "interaction_id",
        "reviewer",
    ]
