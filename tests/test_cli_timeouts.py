"""`dormouse timeouts set` keeps what it is not given, and the history shows every change."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from click.testing import Result
from sqlalchemy import Engine, update

from conversations.db import session_factory, transaction
from conversations.models import Message
from conversations.timeout_store import load_policies
from conversations.timeouts import Scope
from conversations.types import utcnow
from tests.conftest import Backend
from tests.factories import ingest_sms

Cli = Callable[..., Result]


def dormouse(backend: Backend, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "timeouts", *args],
        env={
            **os.environ,
            "DATABASE_URL": backend.database_url,
            "DATA_DIR": str(backend.data_dir),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_set_keeps_the_nudge_and_closing_message_it_is_not_given(
    db: Engine, migrated: Backend
) -> None:
    dormouse(
        migrated,
        "set",
        "3h",
        "--channel",
        "sms",
        "--nudge-before",
        "30m",
        "--nudge-message",
        "Still there?",
        "--closing-message",
        "Closing now, bye!",
    )
    said = dormouse(migrated, "set", "5h", "--channel", "sms")
    assert said.startswith("channel sms: inactivity '3h' → '5h'")

    with session_factory(db)() as session:
        policy = load_policies(session)[Scope("", "sms")]
    assert policy.inactivity == timedelta(hours=5)
    assert policy.nudge_before == timedelta(minutes=30)
    assert (policy.nudge_message, policy.closing_message) == ("Still there?", "Closing now, bye!")

    dormouse(migrated, "set", "5h", "--channel", "sms", "--no-closing-message")
    history = dormouse(migrated, "history").splitlines()
    assert "closing_message 'Closing now, bye!' → None" in history[0]
    assert "inactivity '3h' → '5h'" in history[1] and "nudge" not in history[1]
    assert "unset → 3h" in history[2]
    # A new policy's history names its nudge and closing message, not only its inactivity.
    assert "nudge_before '30m'" in history[2] and "'Closing now, bye!'" in history[2]


def test_recompute_into_a_log_file_writes_plain_lines(db: Engine, dormouse_cli: Cli) -> None:
    for n in range(3):
        ingest_sms(db, "hello", sender=f"+1415555011{n}")

    result = dormouse_cli("timeouts", "recompute")  # click's runner: stdout is not a terminal

    assert result.exit_code == 0, result.output
    assert "\r" not in result.output
    lines = result.output.splitlines()
    assert lines[-1] == "recomputed deadlines of 3 open conversation(s) (global default)"
    assert all(line.startswith(("recomputing deadlines: ", "recomputed ")) for line in lines)


def test_set_says_how_many_open_conversations_it_nudges_or_closes_right_away(
    db: Engine, migrated: Backend
) -> None:
    quiet = utcnow() - timedelta(minutes=5)
    for n in range(2):
        ingest_sms(db, "hi", sender=f"+1415555012{n}", now=quiet)
    ingest_sms(db, "just now", sender="+14155550129")
    with transaction(db) as session:
        session.execute(update(Message).values(inbound_state="done"))

    said = dormouse(migrated, "set", "3m", "--channel", "sms", "--nudge-before", "1m")
    assert "Nudges 2 open conversations right away." in said.splitlines()
    said = dormouse(migrated, "set", "3m", "--channel", "sms", "--no-nudge")
    assert "Closes 2 open conversations right away." in said.splitlines()
    said = dormouse(migrated, "set", "1h", "--channel", "sms")
    assert "Nudges and closes no open conversation right away." in said.splitlines()
