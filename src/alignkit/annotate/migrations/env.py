"""Alembic environment: migrations run on the connection `db.upgrade` hands over (no alembic.ini, no URL)."""

from alembic import context

from alignkit.annotate.db import Base

connection = context.config.attributes["connection"]
# render_as_batch lets later migrations alter SQLite tables (copy-and-move, as SQLite has no ALTER COLUMN).
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
