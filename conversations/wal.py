"""SQLite's write-ahead log, emptied on purpose: after an erasure and when Dormouse stops.

Committed changes go to ``dormouse.db-wal`` first and reach the database file at a checkpoint;
until the WAL is truncated it still holds the old pages, erased text included. SQLite
checkpoints by itself every 1,000 pages, but that checkpoint only rewinds the WAL, leaving its
old frames in the file until they are overwritten.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from sqlalchemy.engine import URL, make_url

log = logging.getLogger(__name__)

# How long a checkpoint waits for other processes' transactions to end. While it waits, new
# writers wait too (they have a 30 s busy timeout, so they are delayed, never failed).
CHECKPOINT_WAIT_SECONDS = 2.0


def sqlite_file(database_url: str | URL) -> Path | None:
    """The database file of a SQLite URL; None for any other database or an in-memory one."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def truncate_wal(database_url: str | URL) -> bool:
    """Checkpoint every committed page into the database file and cut the WAL to 0 bytes.

    Returns whether it did all of that (True too when there is nothing to do: not SQLite, no
    file). Other processes may go on using the file: with a reader in the middle of a
    transaction the checkpoint copies what it can and leaves the rest of the WAL for the next
    one, and says so in the log.

    Its own connection, not one from an engine's pool: a pooled one may be inside a
    transaction, or be handed to another thread meanwhile, and the pool's connect event sets
    pragmas this needs none of. Closed at once; if it was the last connection to the file,
    closing also removes ``-wal`` and ``-shm``.
    """
    path = sqlite_file(database_url)
    if path is None or not path.exists():
        return True
    connection = sqlite3.connect(path, timeout=CHECKPOINT_WAIT_SECONDS, isolation_level=None)
    try:
        busy, wal_pages, copied = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        connection.close()
    if busy:
        log.warning(
            "WAL checkpoint of %s: %s of %s pages copied, the rest waits for the next "
            "checkpoint (another process was reading or writing)",
            path,
            copied,
            wal_pages,
        )
        return False
    return True
