"""The interaction store: SQLAlchemy Core over a SQLite file by default, any SQLAlchemy URL otherwise.

Tables: `interactions` (one row per logged interaction, feedback columns inline), `quarantine` (records
that failed validation, with file, line and reason), `feedback` (feedback that arrived apart from its
interaction, joined into `interactions` by id), `implicit_signals` (rephrase / retry / escalation, derived
after ingestion), `cycle_marks` (when a cycle last collected, for `flywheel status`), `reviews` (expert
answers: in the triage task the correct expert and the cause of an unsatisfactory rating, in the audit
task the correct expert only) and `audit_items` (the blind audit sample; an item keeps its test /
validation split for good).

Writes are idempotent: keys are content hashes and ids, and inserts skip existing keys (`ON CONFLICT DO
NOTHING` on SQLite and PostgreSQL, a look-up first elsewhere). The same code runs on both backends; the
store tests run on both. Opening a store brings its schema to the newest Alembic revision
(`flywheel.core.migrations`), a store made before Alembic included.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from flywheel.core import migrations

# What the queries below see of the schema; the schema itself is made and changed by the Alembic revisions
# in flywheel/core/migrations/ (a test checks that the two agree).
metadata = sa.MetaData()

interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("session_id", sa.String(200), nullable=False),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("query_masked", sa.Text, nullable=False),
    sa.Column("routed_expert", sa.String(100), nullable=False, index=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("latency_ms", sa.Float),  # null where the producer did not measure it (blueprint records)
    sa.Column("ttft_ms", sa.Float),
    sa.Column("tokens_in", sa.Integer, nullable=False),
    sa.Column("tokens_out", sa.Integer, nullable=False),
    # the record had no token counts: they were estimated with a tokenizer (flywheel.collect.tokens)
    sa.Column("tokens_estimated", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("answer_excerpt", sa.Text),
    sa.Column("thumbs", sa.String(4)),
    sa.Column("rating", sa.Integer),
    sa.Column("comment", sa.Text),
    sa.Column("satisfied", sa.Boolean),
    sa.Column("request_json", sa.Text, nullable=False),
    sa.Column("response_json", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("content_hash", sa.String(64), primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("line", sa.Integer),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),  # the start of the record, PII masked: never the raw text
    sa.Column("raw_sha256", sa.String(64)),  # of the raw record's bytes; null only in rows not yet scrubbed
    sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("content_hash", sa.String(64), primary_key=True),
    sa.Column("interaction_id", sa.String(200), nullable=False, index=True),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
    sa.Column("thumbs", sa.String(4)),
    sa.Column("rating", sa.Integer),
    sa.Column("comment", sa.Text),
    sa.Column("satisfied", sa.Boolean),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("applied", sa.Boolean, nullable=False, index=True),  # joined into its interaction yet?
)

implicit_signals = sa.Table(
    "implicit_signals",
    metadata,
    sa.Column("interaction_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),  # rephrase / retry / escalation
    sa.Column("related_id", sa.String(200)),  # the follow-up that revealed it
    sa.Column("score", sa.Float),  # similarity for a rephrase
    sa.Column("detail", sa.Text),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
)

cycle_marks = sa.Table(
    "cycle_marks",
    metadata,
    sa.Column("cycle_id", sa.String(200), primary_key=True),
    sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("data_until", sa.DateTime(timezone=True)),  # newest interaction timestamp then
    sa.Column("interactions", sa.Integer, nullable=False),
    sa.Column("with_feedback", sa.Integer, nullable=False),
)

FEEDBACK_COLUMNS = ("thumbs", "rating", "comment", "satisfied")
IN_CHUNK = 500  # keys per IN (...) query: well under SQLite's and PostgreSQL's bound-parameter limits

REVIEW_TASKS = ("triage", "audit")
AUDIT_SPLITS = ("test", "validation")

reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("interaction_id", sa.String(200), sa.ForeignKey("interactions.id"), primary_key=True),
    sa.Column("reviewer", sa.String(200), primary_key=True),
    sa.Column("correct_expert", sa.String(100), nullable=False),
    sa.Column("cause", sa.String(40)),  # null for an audit answer: the audit asks only for the expert
    sa.Column("origin", sa.String(40), nullable=False),
    sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
    # last, as revision 0002 added it: one reviewer may answer an interaction in both tasks
    sa.Column("task", sa.String(20), primary_key=True, server_default="triage"),
)

audit_items = sa.Table(
    "audit_items",
    metadata,
    sa.Column("interaction_id", sa.String(200), sa.ForeignKey("interactions.id"), primary_key=True),
    sa.Column("split", sa.String(20), nullable=False),  # test | validation, kept for good
    sa.Column("cycle_id", sa.String(200), nullable=False),
    sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
)


SQLITE_BUSY_TIMEOUT_MS = 30_000


review_selections = sa.Table(
    "review_selections",
    metadata,
    sa.Column("interaction_id", sa.String(200), sa.ForeignKey("interactions.id"), primary_key=True),
    sa.Column("cycle_id", sa.String(200), primary_key=True),
    sa.Column("task", sa.String(20), nullable=False),  # triage | audit
    sa.Column("policy", sa.String(40), nullable=False),  # REVIEW_POLICIES
    sa.Column("score", sa.Float),  # the policy's priority for the record (None: random)
    sa.Column("selected_at", sa.DateTime(timezone=True), nullable=False),
)

shadow_decisions = sa.Table(
    "shadow_decisions",
    metadata,
    sa.Column("interaction_id", sa.String(200), sa.ForeignKey("interactions.id"), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),  # SHADOW_ROLES
    sa.Column("decision", sa.String(200)),  # the expert it chose (None: no single expert)
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
)
SHADOW_ROLES = ("production", "candidate")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers and the one writer do not block each other, so the router service keeps logging while
    an ingest writes the same file; a writer waits for another's transaction (busy timeout) instead of
    failing at once with "database is locked"."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # persistent; "memory" for in-memory stores. A file system without shared memory keeps the
        # rollback journal.
        with contextlib.suppress(Exception):
            cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """A handle on the store; create once per process and pass it around."""

    def __init__(self, url: str):
        self.url = url
        self.engine: Engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        migrations.upgrade(self.engine)
        # A store created before latency became optional cannot take records without one (SQLite cannot
        # drop NOT NULL in place); ingestion quarantines those with a reason instead of failing.
        columns = {c["name"]: c for c in sa.inspect(self.engine).get_columns("interactions")}
        self.latency_required = not columns["latency_ms"]["nullable"]

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)})"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # --- writes ----------------------------------------------------------------------------------
    def _insert_new(
        self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
    ) -> int:
        """Insert rows whose key is not in the table yet; return how many were new. Duplicates within
        `rows` keep their first occurrence."""
        seen: set[Any] = set()
        unique = []
        for row in rows:
            key = tuple(row[k] for k in keys)
            if key not in seen:
                seen.add(key)
                unique.append(row)
        if not unique:
            return 0
        if self.dialect in ("sqlite", "postgresql"):
            if all(row.keys() == unique[0].keys() for row in unique):
                return self._insert_many(conn, table, unique)
            if self.dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(table).on_conflict_do_nothing().returning(table.c[keys[0]])
            return len(conn.execute(stmt, unique).all())
        existing = self._existing_keys(conn, table, [tuple(row[k] for k in keys) for row in unique], keys)
        fresh = [row for row in unique if tuple(row[k] for k in keys) not in existing]
        if fresh:
            conn.execute(table.insert(), fresh)
        return len(fresh)

    def _insert_many(self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
        """`INSERT ... ON CONFLICT DO NOTHING` as one driver-level executemany (SQLite, PostgreSQL), values
        converted by the columns' own SQLAlchemy bind processors: at ingestion batch sizes SQLAlchemy's
        per-row parameter handling costs more than the database. Returns how many rows were new."""
        dialect = self.engine.dialect
        names = list(rows[0])
        values_of = operator.itemgetter(*names)
        # The dialect's own column types, as SQLAlchemy binds them (dates and booleans on SQLite).
        processors = [
            (i, table.c[n].type.dialect_impl(dialect).bind_processor(dialect)) for i, n in enumerate(names)
        ]
        processors = [(i, p) for i, p in processors if p is not None]
        params = []
        for row in rows:
            values = list(values_of(row)) if len(names) > 1 else [row[names[0]]]
            for i, process in processors:
                if values[i] is not None:
                    values[i] = process(values[i])
            params.append(tuple(values))
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, names))}) "
            f"VALUES ({', '.join([mark] * len(names))}) ON CONFLICT DO NOTHING"
        )
        return conn.exec_driver_sql(sql, params).rowcount

    @staticmethod
    def _existing_keys(
        conn: sa.Connection, table: sa.Table, wanted: Sequence[tuple], keys: Sequence[str]
    ) -> set[tuple]:
        cols = [table.c[k] for k in keys]
        found: set[tuple] = set()
        for chunk in _chunks(sorted(set(wanted)), IN_CHUNK):
            where = cols[0].in_([k[0] for k in chunk]) if len(cols) == 1 else sa.tuple_(*cols).in_(chunk)
            found.update(tuple(r) for r in conn.execute(sa.select(*cols).where(where)))
        return found

    def add_interactions(self, rows: Sequence[dict[str, Any]]) -> int:
        with self.engine.begin() as conn:
            return self._insert_new(conn, interactions, rows, ["content_hash"])

    def add_reviews(self, rows: Sequence[dict[str, Any]], task: str = "triage") -> int:
        """Expert answers, new (interaction, reviewer, task) keys only; `task` is for rows without one."""
        rows = [row if "task" in row else {**row, "task": task} for row in rows]
        if unknown := {row["task"] for row in rows} - set(REVIEW_TASKS):
            raise ValueError(f"unknown review task(s) {sorted(unknown)}: one of {REVIEW_TASKS}")
        with self.engine.begin() as conn:
            return self._insert_new(conn, reviews, rows, ["interaction_id", "reviewer", "task"])

    def add_audit_items(self, rows: Sequence[dict[str, Any]]) -> int:
        """Interactions sampled for the audit (interaction_id, split, cycle_id, sampled_at); an item already
        in the audit keeps its split and cycle. Returns how many were added."""
        if unknown := {row["split"] for row in rows} - set(AUDIT_SPLITS):
            raise ValueError(f"unknown audit split(s) {sorted(unknown)}: one of {AUDIT_SPLITS}")
        with self.engine.begin() as conn:
            return self._insert_new(conn, audit_items, rows, ["interaction_id"])

    def add_review_selections(self, rows: Sequence[dict[str, Any]]) -> int:
        """Why records went to the experts: (interaction_id, cycle_id, task, policy, score, selected_at); a
        record already selected in that cycle keeps its first policy. Returns how many were added."""
        with self.engine.begin() as conn:
            return self._insert_new(conn, review_selections, rows, ["interaction_id", "cycle_id"])

    def add_shadow_decisions(self, rows: Sequence[dict[str, Any]]) -> int:
        """Decisions made in shadow: (interaction_id, model, role, decision, decided_at); the first one per
        (interaction, model) is kept. Returns how many were added."""
        if unknown := {row["role"] for row in rows} - set(SHADOW_ROLES):
            raise ValueError(f"unknown shadow role(s) {sorted(unknown)}: one of {SHADOW_ROLES}")
        with self.engine.begin() as conn:
            return self._insert_new(conn, shadow_decisions, rows, ["interaction_id", "model"])

    def write_batch(
        self,
        interaction_rows: Sequence[dict[str, Any]] = (),
        quarantined_rows: Sequence[dict[str, Any]] = (),
        feedback_rows: Sequence[dict[str, Any]] = (),
    ) -> tuple[int, int]:
        """One ingestion batch in one transaction (a killed ingest leaves whole batches only);
        returns (new interactions, new feedback records)."""
        with self.engine.begin() as conn:
            new_interactions = self._insert_new(conn, interactions, interaction_rows, ["content_hash"])
            self._insert_new(conn, quarantine, quarantined_rows, ["content_hash"])
            new_feedback = self._insert_new(conn, feedback, feedback_rows, ["content_hash"])
        return new_interactions, new_feedback

    def legacy_quarantine(self) -> list[tuple[str, str]]:
        """(key, raw) of quarantine rows written before the quarantine kept masked copies only."""
        query = sa.select(quarantine.c.content_hash, quarantine.c.raw).where(
            quarantine.c.raw_sha256.is_(None)
        )
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(query)]

    def set_quarantine_copies(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """Replace the kept copy of quarantine rows: (key, masked copy, SHA-256 of the former text)."""
        stmt = (
            quarantine.update()
            .where(quarantine.c.content_hash == sa.bindparam("key"))
            .values(raw=sa.bindparam("copy"), raw_sha256=sa.bindparam("digest"))
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, [{"key": k, "copy": c, "digest": d} for k, c, d in rows])

    def apply_feedback(self) -> int:
        """Join separately arrived feedback into its interactions: the newest record per interaction
        (by timestamp, then content hash) sets thumbs, rating, comment and satisfied. Records whose
        interaction is not stored yet wait for a later ingest. Returns how many interactions changed."""
        changed = 0
        with self.engine.begin() as conn:
            pending = [
                r[0]
                for r in conn.execute(
                    sa.select(feedback.c.interaction_id).where(feedback.c.applied.is_(False)).distinct()
                )
            ]
            for chunk in _chunks(sorted(pending), IN_CHUNK):
                present = {
                    r[0]
                    for r in conn.execute(sa.select(interactions.c.id).where(interactions.c.id.in_(chunk)))
                }
                if not present:
                    continue
                newest: dict[str, Any] = {}
                query = (
                    sa.select(feedback)
                    .where(feedback.c.interaction_id.in_(sorted(present)))
                    .order_by(feedback.c.interaction_id, feedback.c.timestamp, feedback.c.content_hash)
                )
                for row in conn.execute(query).mappings():
                    newest[row["interaction_id"]] = row  # ordered: the last one per id is the newest
                for interaction_id, row in newest.items():
                    conn.execute(
                        interactions.update()
                        .where(interactions.c.id == interaction_id)
                        .values({c: row[c] for c in FEEDBACK_COLUMNS})
                    )
                conn.execute(
                    feedback.update()
                    .where(feedback.c.interaction_id.in_(sorted(present)))
                    .values(applied=True)
                )
                changed += len(newest)
        return changed

    def replace_signals(self, rows: Sequence[dict[str, Any]]) -> int:
        """Implicit signals are derived data: recomputed whole, replaced in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(implicit_signals.delete())
            if rows:
                conn.execute(implicit_signals.insert(), list(rows))
        return len(rows)

    def mark_cycle(self, cycle_id: str) -> dict[str, Any]:
        """Record that a cycle collected now: `flywheel status` counts new feedback from here."""
        with self.engine.begin() as conn:
            data_until = conn.execute(sa.select(sa.func.max(interactions.c.timestamp))).scalar_one()
            total = conn.execute(sa.select(sa.func.count()).select_from(interactions)).scalar_one()
            with_feedback = conn.execute(
                sa.select(sa.func.count()).select_from(interactions).where(_has_feedback())
            ).scalar_one()
            mark = {
                "cycle_id": cycle_id,
                "marked_at": utcnow(),
                "data_until": data_until,
                "interactions": total,
                "with_feedback": with_feedback,
            }
            conn.execute(cycle_marks.delete().where(cycle_marks.c.cycle_id == cycle_id))
            conn.execute(cycle_marks.insert(), [mark])
        return mark

    # --- reads -----------------------------------------------------------------------------------
    def hashes_for_ids(self, ids: Iterable[str]) -> dict[str, str]:
        """Content hash stored under each of these ids, for those that are stored."""
        found: dict[str, str] = {}
        query = sa.select(interactions.c.id, interactions.c.content_hash)
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(ids)), IN_CHUNK):
                found.update(tuple(r) for r in conn.execute(query.where(interactions.c.id.in_(chunk))))
        return found

    def count(self, table: sa.Table) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

    def last_cycle_mark(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(cycle_marks).order_by(cycle_marks.c.marked_at.desc()).limit(1))
                .mappings()
                .first()
            )
        if row is None:
            return None
        return {k: _utc(v) if isinstance(v, datetime) else v for k, v in row.items()}

    def feedback_since(self, since: datetime | None) -> int:
        """Interactions whose explicit feedback reached the store after `since` (all when None)."""
        inline = sa.select(interactions.c.id).where(_has_feedback())
        separate = sa.select(feedback.c.interaction_id.label("id"))
        if since is not None:
            inline = inline.where(interactions.c.ingested_at > since)
            separate = separate.where(feedback.c.ingested_at > since)
        union = sa.union(inline, separate).subquery()
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(union)).scalar_one()

    def interactions_frame(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        cols = [interactions.c[c] for c in columns] if columns else [interactions]
        query = sa.select(*cols).order_by(interactions.c.timestamp, interactions.c.id)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        return _utc_columns(frame, ("timestamp", "ingested_at"))

    def quarantine_frame(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            frame = pd.read_sql(
                sa.select(quarantine).order_by(
                    quarantine.c.source, quarantine.c.line, quarantine.c.content_hash
                ),
                conn,
            )
        return _utc_columns(frame, ("quarantined_at",))

    def feedback_frame(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            frame = pd.read_sql(
                sa.select(feedback).order_by(feedback.c.interaction_id, feedback.c.timestamp), conn
            )
        return _utc_columns(frame, ("timestamp", "ingested_at"))

    def signals_frame(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            frame = pd.read_sql(
                sa.select(implicit_signals).order_by(
                    implicit_signals.c.interaction_id, implicit_signals.c.kind
                ),
                conn,
            )
        return _utc_columns(frame, ("computed_at",))

    def reviews_frame(self, task: str | None = None) -> pd.DataFrame:
        """Expert answers, with their `task` (triage or audit); only one task's when `task` is given."""
        query = sa.select(reviews).order_by(reviews.c.interaction_id, reviews.c.reviewer, reviews.c.task)
        if task is not None:
            query = query.where(reviews.c.task == task)
        with self.engine.connect() as conn:
            return _utc_columns(pd.read_sql(query, conn), ("reviewed_at",))

    def audit_frame(self) -> pd.DataFrame:
        """The audit sample of every cycle so far: interaction_id, split, cycle_id, sampled_at."""
        query = sa.select(audit_items).order_by(audit_items.c.sampled_at, audit_items.c.interaction_id)
        with self.engine.connect() as conn:
            return _utc_columns(pd.read_sql(query, conn), ("sampled_at",))

    def review_selections_frame(self) -> pd.DataFrame:
        query = sa.select(review_selections).order_by(
            review_selections.c.cycle_id, review_selections.c.interaction_id
        )
        with self.engine.connect() as conn:
            return _utc_columns(pd.read_sql(query, conn), ("selected_at",))

    def shadow_frame(self, role: str | None = None) -> pd.DataFrame:
        """Shadow decisions (one role's when `role` is given)."""
        query = sa.select(shadow_decisions).order_by(
            shadow_decisions.c.interaction_id, shadow_decisions.c.model
        )
        if role is not None:
            query = query.where(shadow_decisions.c.role == role)
        with self.engine.connect() as conn:
            return _utc_columns(pd.read_sql(query, conn), ("decided_at",))


def _has_feedback() -> sa.ColumnElement[bool]:
    return sa.or_(
        interactions.c.thumbs.is_not(None),
        interactions.c.rating.is_not(None),
        interactions.c.comment.is_not(None),
    )


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    for column in columns:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
