"""The store's and the registry's schema, versioned with Alembic; `Store` upgrades to the newest revision
when it opens a database.

Revisions live in `versions/` and ship with the package; nothing reads an alembic.ini. A new revision:

    from alembic import command
    from flywheel.core import migrations, registry, store  # registry: its table joins the metadata
    with store.Store(url).engine.connect() as connection:  # a store at the newest revision
        command.revision(migrations.alembic_config(connection, store.metadata), "what changes",
                         autogenerate=True)

then read and edit the file it writes (autogenerate misses some changes, e.g. renames).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

SCRIPTS = Path(__file__).parent
# PostgreSQL advisory lock held while a store is migrated: a number of our own, the same in every process
PG_LOCK_KEY = zlib.crc32(b"flywheel.core.migrations")


def alembic_config(connection: sa.Connection, target_metadata: sa.MetaData | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    config.attributes["target_metadata"] = target_metadata
    return config


@cache
def head() -> str:
    """The newest revision."""
    head = ScriptDirectory(str(SCRIPTS)).get_current_head()
    assert head is not None, f"no revisions in {SCRIPTS / 'versions'}"
    return head


def current(connection: sa.Connection) -> str | None:
    """The revision a database is at (None: made before Alembic, or empty)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine) -> None:
    """Bring the database to the newest revision. Processes opening one database at once (a service and
    an ingest) take turns: the first migrates, the others find it done."""
    with engine.connect() as conn:
        if current(conn) == head():
            return
    with _migration_lock(engine) as conn:
        if current(conn) != head():
            command.upgrade(alembic_config(conn), "head")


@contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that no other process migrating the same database runs beside. Both backends change
    their schema inside a transaction, so a failed migration leaves the database as it was."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # the write lock now, not at the first write; another opener waits (busy timeout)
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_LOCK_KEY)))
        yield conn
        conn.commit()
