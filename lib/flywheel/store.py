"""The interaction store: SQLAlchemy Core over a SQLite file by default, any SQLAlchemy URL otherwise.

Tables: `interactions` (one row per logged interaction, feedback columns inline), `quarantine` (records
that failed validation, with file, line and reason) and `reviews` (expert answers on the correct expert
and the cause of an unsatisfactory rating). Writes are idempotent: keys are content hashes and ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

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
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("ttft_ms", sa.Float),
    sa.Column("tokens_in", sa.Integer, nullable=False),
    sa.Column("tokens_out", sa.Integer, nullable=False),
    sa.Column("answer_excerpt", sa.Text),
    sa.Column("thumbs", sa.String(4)),
    sa.Column("rating", sa.Integer),
    sa.Column("comment", sa.Text),
    sa.Column("satisfied", sa.Boolean),
    sa.Column("request_json", sa.Text, nullable=False),
    sa.Column("response_json", sa.Text, nullable=False),
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("content_hash", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("line", sa.Integer),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
)

reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("interaction_id", sa.String(200), sa.ForeignKey("interactions.id"), primary_key=True),
    sa.Column("reviewer", sa.String(200), primary_key=True),
    sa.Column("correct_expert", sa.String(100), nullable=False),
    sa.Column("cause", sa.String(40), nullable=False),
    sa.Column("origin", sa.String(40), nullable=False),
    sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """A handle on the store; create once per process and pass it around."""

    def __init__(self, url: str):
        self.url = url
        self.engine: Engine = sa.create_engine(url, future=True)
        metadata.create_all(self.engine)

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)})"

    # --- writes ----------------------------------------------------------------------------------
    def _insert_new(self, table: sa.Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> int:
        """Insert rows whose key is not in the table yet; return how many were new."""
        if not rows:
            return 0
        key_cols = [table.c[k] for k in keys]
        with self.engine.begin() as conn:
            if len(keys) == 1:
                wanted = {row[keys[0]] for row in rows}
                existing = {
                    r[0]
                    for chunk in _chunks(sorted(wanted), 500)
                    for r in conn.execute(sa.select(key_cols[0]).where(key_cols[0].in_(chunk)))
                }
                fresh = [row for row in rows if row[keys[0]] not in existing]
            else:
                existing = {tuple(r) for r in conn.execute(sa.select(*key_cols))}
                fresh = [row for row in rows if tuple(row[k] for k in keys) not in existing]
            # Deduplicate within the batch too, keeping the first occurrence.
            seen: set[Any] = set()
            unique = []
            for row in fresh:
                key = tuple(row[k] for k in keys)
                if key not in seen:
                    seen.add(key)
                    unique.append(row)
            if unique:
                conn.execute(table.insert(), unique)
        return len(unique)

    def add_interactions(self, rows: Sequence[dict[str, Any]]) -> int:
        return self._insert_new(interactions, rows, ["content_hash"])

    def add_quarantined(self, rows: Sequence[dict[str, Any]]) -> int:
        return self._insert_new(quarantine, rows, ["content_hash"])

    def add_reviews(self, rows: Sequence[dict[str, Any]]) -> int:
        return self._insert_new(reviews, rows, ["interaction_id", "reviewer"])

    # --- reads -----------------------------------------------------------------------------------
    def hashes_for_ids(self, ids: Iterable[str]) -> dict[str, str]:
        """Content hash stored under each of these ids, for those that are stored."""
        found: dict[str, str] = {}
        query = sa.select(interactions.c.id, interactions.c.content_hash)
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(ids)), 500):
                found.update(tuple(r) for r in conn.execute(query.where(interactions.c.id.in_(chunk))))
        return found

    def count(self, table: sa.Table) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

    def interactions_frame(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        cols = [interactions.c[c] for c in columns] if columns else [interactions]
        query = sa.select(*cols).order_by(interactions.c.timestamp, interactions.c.id)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        if "timestamp" in frame:
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        return frame

    def quarantine_frame(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(sa.select(quarantine).order_by(quarantine.c.source, quarantine.c.line), conn)

    def reviews_frame(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(
                sa.select(reviews).order_by(reviews.c.interaction_id, reviews.c.reviewer), conn
            )


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
