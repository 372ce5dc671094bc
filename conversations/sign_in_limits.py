"""How many sign-ins a name and an address may attempt: counted before any password is checked.

Each attempt adds one to two counters, its operator name's (from any address: guessing one
account from many addresses is the attack) and its client address's (any names: spraying
many accounts from one). Over either limit the attempt is refused without looking at the
password. The count is one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` committed before
the password check, so concurrent attempts each get their own number: thirty at once check
at most ``NAME_LIMIT`` passwords, where counting failures afterwards let fourteen through.

A fixed window per counter (``WINDOW`` from its first attempt). The price of a per-name
limit: a stranger can keep one operator waiting by guessing their name; an operator who
must get in at once has their password reset (``dormouse operators passwd`` clears it).
Callers own the transaction and commit it before checking the password.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal, update
from sqlalchemy.orm import Session

from conversations.models import SignInAttempts
from conversations.statements import dialect_insert
from conversations.types import UTCDateTime

NAME_LIMIT = 5  # attempts on one operator name per window, from any address
ADDRESS_LIMIT = 20  # attempts from one client address per window, on any names
WINDOW = timedelta(minutes=15)


def count_attempt(session: Session, name: str, *, address: str, now: datetime) -> int:
    """Count one attempt; seconds to wait if its name or address is over its limit, else 0."""
    wait = 0
    for scope, key, limit in (
        ("name", name[:64], NAME_LIMIT),
        ("address", address[:64], ADDRESS_LIMIT),
    ):
        count, started = _increment(session, scope, key, now)
        if count > limit:
            wait = max(wait, int((started + WINDOW - now).total_seconds()) + 1)
    return wait


def forget_attempts(session: Session, name: str, *, address: str) -> None:
    """After a right password: the name starts afresh; the address's count loses this
    attempt (one account signing in does not wipe what it tried on others)."""
    table = SignInAttempts.__table__
    session.execute(delete(table).where(table.c.scope == "name", table.c.key == name[:64]))
    session.execute(
        update(table)
        .where(table.c.scope == "address", table.c.key == address[:64], table.c.count > 0)
        .values(count=table.c.count - 1)
    )


def prune_attempts(session: Session, *, now: datetime) -> None:
    """Forget counters whose window ended. In a transaction of its own: one statement that
    waits on no other lock while it holds one, so it cannot deadlock with the counting."""
    table = SignInAttempts.__table__
    session.execute(delete(table).where(table.c.window_started_at <= now - WINDOW))


def clear_name(session: Session, name: str) -> None:
    """An operator whose password was just set may sign in at once."""
    table = SignInAttempts.__table__
    session.execute(delete(table).where(table.c.scope == "name", table.c.key == name[:64]))


def _increment(session: Session, scope: str, key: str, now: datetime) -> tuple[int, datetime]:
    table = SignInAttempts.__table__
    ended = table.c.window_started_at <= now - WINDOW
    insert = dialect_insert(session, SignInAttempts).values(
        scope=scope, key=key, count=1, window_started_at=now
    )
    statement = insert.on_conflict_do_update(
        index_elements=["scope", "key"],
        set_={
            "count": case((ended, 1), else_=table.c.count + 1),
            "window_started_at": case(
                (ended, literal(now, UTCDateTime())), else_=table.c.window_started_at
            ),
        },
    ).returning(table.c.count, table.c.window_started_at)
    count, started = session.execute(statement).one()
    return int(count), started
