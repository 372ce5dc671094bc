"""Alembic environment: the URL comes from the config (set by ``dormouse migrate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from conversations.db import make_engine
from conversations.models import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


url = config.get_main_option("sqlalchemy.url")
if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(str(url))
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()
