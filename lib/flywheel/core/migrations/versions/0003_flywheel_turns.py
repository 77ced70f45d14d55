"""The flywheel's turns: why each record went to the experts, and decisions made in shadow.

- `review_selections`: per cycle, each record sent to the experts and the policy that chose it (the random
  audit sample, a judge's flag, a student's uncertainty or disagreement with production, ...), so that what
  each policy bought can be compared.
- `shadow_decisions`: decisions computed beside the router in service without answering with them: the
  production model asked in shadow on a sampled share of the queries a student answered (teacher labels and
  agreement keep coming), and a candidate in its shadow week. One row per (interaction, model).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = set(sa.inspect(op.get_bind()).get_table_names())
    if "review_selections" not in tables:
        op.create_table(
            "review_selections",
            sa.Column("interaction_id", sa.String(200), sa.ForeignKey("interactions.id"), primary_key=True),
            sa.Column("cycle_id", sa.String(200), primary_key=True),
            sa.Column("task", sa.String(20), nullable=False),
            sa.Column("policy", sa.String(40), nullable=False),
            sa.Column("score", sa.Float),
            sa.Column("selected_at", sa.DateTime(timezone=True), nullable=False),
        )
    if "shadow_decisions" not in tables:
        op.create_table(
            "shadow_decisions",
            sa.Column("interaction_id", sa.String(200), sa.ForeignKey("interactions.id"), primary_key=True),
            sa.Column("model", sa.String(200), primary_key=True),
            sa.Column("role", sa.String(20), nullable=False),
            sa.Column("decision", sa.String(200)),
            sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        )


def downgrade() -> None:
    op.drop_table("shadow_decisions")
    op.drop_table("review_selections")
