"""The connection pool: a PostgreSQL connection that died while idle is replaced, not used."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from conversations import db as db_module
from conversations.db import make_engine


def test_a_connection_killed_while_idle_is_replaced_on_checkout(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite is a file opened in-process: there is no server connection to lose")
    engine = make_engine(db.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            before = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        # What a database restart or a proxy closing idle sockets does to a pooled connection.
        with db.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
            admin.commit()
        # As if it sat idle past the threshold: the pool pings it before handing it out.
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() not in (None, before)
    finally:
        engine.dispose()
