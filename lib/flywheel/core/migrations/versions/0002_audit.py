"""The blind audit: the `audit_items` table, and reviews keyed by task.

`reviews` gets `task` ('triage' | 'audit'; existing rows are triage answers), `cause` becomes nullable (an
audit answer has none) and the primary key becomes (interaction_id, reviewer, task), so one reviewer may
answer an interaction in both tasks. SQLite alters the table by copying it (batch mode).

A store adopted by 0001 from `metadata.create_all` may have these already: each change is made only where
it is missing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import warnings
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PK_NAME = "reviews_pkey"  # PostgreSQL's own name for it; SQLite's is unnamed until now


@contextmanager
def _reviews_batch():
    """SQLite's copy of the table keeps the reflected columns' primary-key flags, and SQLAlchemy warns
    that the new primary key differs from them: that is the change meant here."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*_alembic_tmp_reviews.*primary_key", category=sa.exc.SAWarning
        )
        with op.batch_alter_table("reviews") as batch:
            yield batch


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "audit_items" not in inspector.get_table_names():
        op.create_table(
            "audit_items",
            sa.Column("interaction_id", sa.String(200), sa.ForeignKey("interactions.id"), primary_key=True),
            sa.Column("split", sa.String(20), nullable=False),
            sa.Column("cycle_id", sa.String(200), nullable=False),
            sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        )
    if "task" in {c["name"] for c in inspector.get_columns("reviews")}:
        return
    old_pk = inspector.get_pk_constraint("reviews")["name"]
    with _reviews_batch() as batch:
        batch.add_column(sa.Column("task", sa.String(20), nullable=False, server_default="triage"))
        batch.alter_column("cause", existing_type=sa.String(40), nullable=True)
        if old_pk:
            batch.drop_constraint(old_pk, type_="primary")
        batch.create_primary_key(PK_NAME, ["interaction_id", "reviewer", "task"])


def downgrade() -> None:
    """Audit answers and items are dropped: the older schema has no place for them."""
    op.execute(sa.text("DELETE FROM reviews WHERE task <> 'triage'"))
    old_pk = sa.inspect(op.get_bind()).get_pk_constraint("reviews")["name"]
    with _reviews_batch() as batch:
        if old_pk:
            batch.drop_constraint(old_pk, type_="primary")
        batch.create_primary_key(PK_NAME, ["interaction_id", "reviewer"])
        batch.alter_column("cause", existing_type=sa.String(40), nullable=False)
        batch.drop_column("task")
    op.drop_table("audit_items")
