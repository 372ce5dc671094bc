"""Engine and session factory.

The caller owns the transaction: store functions take a ``Session`` and never commit; the
request or task that started the unit of work commits once (``with session.begin():``).
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from conversations.settings import get_settings

# Connections each process keeps open (and as many again under bursts).
POOL_SIZE = 5


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        _sqlite_immediate_transactions(engine)
        return engine
    engine = create_engine(
        url,
        pool_size=POOL_SIZE,
        max_overflow=POOL_SIZE,
        # A statement's parameters are customers' addresses and text: never in an error's
        # message, and so never in a log line or a traceback (conversations/log_context.py).
        hide_parameters=True,
        # pg_stat_activity then says which process holds each connection.
        connect_args={"application_name": process_name()} if "postgresql" in url else {},
    )
    _ping_idle_connections(engine)
    return engine


def process_name() -> str:
    """``dormouse worker --queues turns`` and the like: the command this process runs."""
    words = sys.argv[1:]
    if words[:1] == ["--log-level"]:  # dormouse's own option, before the command
        words = words[2:]
    return " ".join(["dormouse", *words[:3]])[:63]


# A connection back in the pool for less than this is used without a ping first.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    # pool_pre_ping pings on every checkout: one extra round trip for each of the three or
    # four transactions of a turn, a tenth of a busy worker's time. A connection that was in
    # use a moment ago is alive; one that sat idle (a database restart, a proxy closing idle
    # sockets) is pinged, and replaced if dead. A restart inside the window fails one unit of
    # work, which the API answers with 503 (the provider retries) and the redrive re-runs.
    @event.listens_for(engine, "connect")
    def _connect(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checkin(
        _dbapi_connection: DBAPIConnection | None, record: ConnectionPoolEntry | None
    ) -> None:
        if record is not None:
            record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(
        dbapi_connection: DBAPIConnection,
        record: ConnectionPoolEntry,
        _proxy: PoolProxiedConnection,
    ) -> None:
        if time.monotonic() - record.info.get("returned_at", 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        # The dialect's own ping (what pool_pre_ping runs): it leaves no transaction open.
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure means this connection is of no use
            raise DisconnectionError(str(exc)) from exc
        if not alive:
            # The pool discards the connection and retries the checkout with a new one.
            raise DisconnectionError("connection did not answer a ping")


def _sqlite_immediate_transactions(engine: Engine) -> None:
    # API, worker and beat are separate processes writing one file. A deferred transaction
    # that reads and then writes fails at once with SQLITE_BUSY when another process wrote in
    # between (busy_timeout does not help there); BEGIN IMMEDIATE takes the write lock up
    # front, so writers queue on busy_timeout instead. WAL lets readers go on meanwhile.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Deleted content is overwritten with zeros, not left in free space: an erased
        # customer's text must not stay readable in the file (see conversations/wal.py).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine() -> Engine:
    """This process's engine (one pool). Locked: a turn worker's threads all ask at once when
    it starts, and an unlocked cache gave several of them an engine, and a pool, each."""
    url = get_settings().effective_database_url
    with _engines_lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
        return _engines[url]


def dispose_engines() -> None:
    """Close the connections of every engine ``get_engine`` made, and forget them."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


@lru_cache(maxsize=8)
def _factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    # One per engine, built once: a sessionmaker per unit of work showed in profiles.
    return _factory(engine or get_engine())


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception."""
    with session_factory(engine)() as session, session.begin():
        yield session


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE run through ``Session.execute`` matched.

    ``Session.execute`` is typed to return a ``Result``; for such a statement it is a
    ``CursorResult``, the one that carries the count.
    """
    return cast(CursorResult[Any], result).rowcount
