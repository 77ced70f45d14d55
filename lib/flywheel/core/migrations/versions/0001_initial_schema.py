"""The store's schema when it moved to Alembic; adopts a store made before (by `metadata.create_all`).

A fresh database gets every table. A store made before Alembic has no `alembic_version` table: it gets
the tables it lacks (the registry's `promotions` appeared only once the registry was used) and the
columns added since stores were first made (`tokens_estimated`, `raw_sha256`), as the store did on open
before.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _interactions() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("session_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("query_masked", sa.Text, nullable=False),
        sa.Column("routed_expert", sa.String(100), nullable=False, index=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("latency_ms", sa.Float),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("tokens_in", sa.Integer, nullable=False),
        sa.Column("tokens_out", sa.Integer, nullable=False),
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


def _quarantine() -> None:
    op.create_table(
        "quarantine",
        sa.Column("content_hash", sa.String(64), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("line", sa.Integer),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("raw_sha256", sa.String(64)),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
    )


def _feedback() -> None:
    op.create_table(
        "feedback",
        sa.Column("content_hash", sa.String(64), primary_key=True),
        sa.Column("interaction_id", sa.String(200), nullable=False, index=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("thumbs", sa.String(4)),
        sa.Column("rating", sa.Integer),
        sa.Column("comment", sa.Text),
        sa.Column("satisfied", sa.Boolean),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("applied", sa.Boolean, nullable=False, index=True),
    )


def _implicit_signals() -> None:
    op.create_table(
        "implicit_signals",
        sa.Column("interaction_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("related_id", sa.String(200)),
        sa.Column("score", sa.Float),
        sa.Column("detail", sa.Text),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    )


def _cycle_marks() -> None:
    op.create_table(
        "cycle_marks",
        sa.Column("cycle_id", sa.String(200), primary_key=True),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data_until", sa.DateTime(timezone=True)),
        sa.Column("interactions", sa.Integer, nullable=False),
        sa.Column("with_feedback", sa.Integer, nullable=False),
    )


def _reviews() -> None:
    op.create_table(
        "reviews",
        sa.Column("interaction_id", sa.String(200), sa.ForeignKey("interactions.id"), primary_key=True),
        sa.Column("reviewer", sa.String(200), primary_key=True),
        sa.Column("correct_expert", sa.String(100), nullable=False),
        sa.Column("cause", sa.String(40), nullable=False),
        sa.Column("origin", sa.String(40), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
    )


def _promotions() -> None:
    op.create_table(
        "promotions",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("artifact_path", sa.Text, nullable=False),
        sa.Column("metrics_json", sa.Text, nullable=False),
        sa.Column("cycle_id", sa.String(200)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undoes_seq", sa.Integer),
        sa.Column("restores_seq", sa.Integer),
    )


# in dependency order: reviews refers to interactions
TABLES: dict[str, Callable[[], None]] = {
    "interactions": _interactions,
    "quarantine": _quarantine,
    "feedback": _feedback,
    "implicit_signals": _implicit_signals,
    "cycle_marks": _cycle_marks,
    "reviews": _reviews,
    "promotions": _promotions,
}

# columns a store made before them lacks
ADDED_COLUMNS = {
    "interactions": lambda: sa.Column(
        "tokens_estimated", sa.Boolean, nullable=False, server_default=sa.false()
    ),
    "quarantine": lambda: sa.Column("raw_sha256", sa.String(64)),
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, create in TABLES.items():
        if name not in existing:
            create()
    for table, column in ADDED_COLUMNS.items():
        added = column()
        if table in existing and added.name not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, added)


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
