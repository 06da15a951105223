"""Alembic environment: runs on the connection the caller hands over.

`storage.migrate` opens the (async) connection and passes it in through
`config.attributes["connection"]`, so the same migrations run on PostgreSQL
and SQLite without an alembic.ini.
"""

from __future__ import annotations

from alembic import context

from storage.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables there.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
