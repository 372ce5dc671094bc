"""Console sessions kept in the database, so that ending one is immediate and survives restarts.

The cookie carries a random id (256 bits); the table keeps only its SHA-256, so a copy of the
database (or a backup) signs no one in. A session lives ``CONSOLE_SESSION_HOURS`` from its
sign-in, not renewed by use. Sign-out deletes its row; "sign out everywhere", a new password
and removing the operator delete all of theirs. Expired rows are pruned at each sign-in.
Callers own the transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from conversations.db import rowcount
from conversations.models import Operator, OperatorSession

TOKEN_BYTES = 32


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    session: Session, operator: Operator, *, now: datetime, lifetime: timedelta
) -> str:
    """A new session for ``operator``; returns the token for the cookie (never stored)."""
    session.execute(delete(OperatorSession).where(OperatorSession.expires_at <= now))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        OperatorSession(
            token_hash=_hash(token),
            operator_id=operator.id,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return token


def session_operator(session: Session, token: str, *, now: datetime) -> Operator | None:
    """The operator a live session belongs to; None when it ended, expired or never was."""
    return session.scalar(
        select(Operator)
        .join(OperatorSession, OperatorSession.operator_id == Operator.id)
        .where(OperatorSession.token_hash == _hash(token), OperatorSession.expires_at > now)
    )


def end_session(session: Session, token: str) -> None:
    session.execute(delete(OperatorSession).where(OperatorSession.token_hash == _hash(token)))


def end_sessions_of(session: Session, operator_id: int) -> int:
    """End every session of one operator; how many there were."""
    return rowcount(
        session.execute(delete(OperatorSession).where(OperatorSession.operator_id == operator_id))
    )
