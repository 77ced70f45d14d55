"""Alembic's environment for the store: run by `alembic.command` with the connection that
`flywheel.core.migrations` hands it (already in a transaction that holds the migration lock)."""

from alembic import context

config = context.config
context.configure(
    connection=config.attributes["connection"],
    target_metadata=config.attributes.get("target_metadata"),  # for `revision --autogenerate`
    render_as_batch=True,  # SQLite alters a table by copying it
)
with context.begin_transaction():
    context.run_migrations()
