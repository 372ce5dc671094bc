"""An erased customer's text is gone from SQLite's files, not only from queries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from conversations.db import session_factory
from conversations.erasure import erase
from conversations.models import Conversation
from tests.conftest import BACKEND, Backend
from tests.factories import ingest_sms

SECRET = "quokka-7731-my-card-ends-4242"


def on_disk(database: Path) -> bytes:
    """The database file and its WAL, as a disk image or a backup would hold them.

    Read by another process: closing a file descriptor of the database in this one would
    drop every POSIX lock this process's SQLite connections hold on it (fcntl locks belong
    to the process, not the descriptor), and other processes writing meanwhile corrupt it.
    """
    files = [str(f) for f in (database, database.with_name(database.name + "-wal")) if f.exists()]
    read = "import sys\nfor f in sys.argv[1:]:\n    sys.stdout.buffer.write(open(f, 'rb').read())"
    return subprocess.run(
        [sys.executable, "-c", read, *files], capture_output=True, check=True
    ).stdout


@pytest.mark.skipif(
    BACKEND != "sqlite",
    reason="on PostgreSQL erased rows stay on disk as dead tuples until (auto)vacuum: "
    "the README says so and tells how to VACUUM",
)
def test_erased_text_is_in_neither_the_database_file_nor_the_wal(
    db: Engine, migrated: Backend
) -> None:
    database = migrated.data_dir / "dormouse.db"
    conversation_id = ingest_sms(db, f"hello, {SECRET}").conversation_id
    ingest_sms(db, f"again: {SECRET}")
    with session_factory(db)() as session:
        customer_id = session.get_one(Conversation, conversation_id).customer_id
    assert SECRET.encode() in on_disk(database)  # what the test looks for is there to find

    assert erase(db, customer_id)

    assert SECRET.encode() not in on_disk(database)
