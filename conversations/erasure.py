"""Erasing a customer as one unit of work, and then from SQLite's files too.

``customers.erase_customer`` deletes the rows inside the caller's transaction; this commits it
and then truncates the WAL, so on SQLite the erased text is gone from disk, not only from
queries (the connections run with ``secure_delete``, which zeroes the deleted content in the
database file itself). On PostgreSQL the deleted rows are dead tuples until (auto)vacuum.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Engine

from conversations.customers import erase_customer
from conversations.db import transaction
from conversations.wal import truncate_wal


def erase(engine: Engine, customer_id: uuid.UUID) -> bool:
    """Erase the customer and everything about them. False when there is no such customer."""
    with transaction(engine) as session:
        erased = erase_customer(session, customer_id)
    if erased:
        # After the commit, outside any transaction: the pages holding the text are in the WAL
        # until this checkpoint copies the zeroed ones over them and empties it.
        truncate_wal(engine.url)
    return erased
