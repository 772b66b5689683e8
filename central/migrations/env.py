"""Alembic environment: always run with a connection handed over by central.migrations
(no alembic.ini, no URL here), inside the caller's transaction."""

from __future__ import annotations

from alembic import context

from selfcheck.central.migrations import OPTIONS
from selfcheck.central.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through central.migrations.upgrade(), not the CLI")
context.configure(connection=connection, target_metadata=metadata,
                  # SQLite cannot ALTER most things: autogenerate batch (copy-and-move) ops.
                  render_as_batch=connection.dialect.name == "sqlite", **OPTIONS)
with context.begin_transaction():
    context.run_migrations()
