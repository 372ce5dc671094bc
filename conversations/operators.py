"""Operator accounts for the console: passwords, checking one at sign-in, and the audit.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile);
only the hash is stored. How many checks a name or an address may ask for is counted before
(conversations/sign_in_limits.py); sessions are rows (conversations/operator_sessions.py),
and a new password or a removal ends all of the operator's. Callers own the transaction.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from conversations.errors import Conflict, InvalidInput, NotFound
from conversations.models import Operator, OperatorAction
from conversations.operator_sessions import end_sessions_of
from conversations.sign_in_limits import clear_name

_hasher = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs what a wrong password does and
# the answer's timing does not say which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 10


def actor_of(name: str) -> str:
    """How an operator appears in audit trails beside API key names."""
    return f"operator:{name}"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(
            f"operator name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-'"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password: at least {MIN_PASSWORD} characters")
    return password


def new_password() -> str:
    """A one-time password for a new operator: 20 URL-safe characters (120 bits)."""
    return secrets.token_urlsafe(15)


def add_operator(session: Session, name: str, password: str, *, now: datetime) -> Operator:
    check_name(name)
    check_password(password)
    if session.scalar(select(Operator.id).where(Operator.name == name)) is not None:
        raise Conflict(f"operator {name!r} exists already")
    operator = Operator(
        name=name, password_hash=_hasher.hash(password), created_at=now, password_changed_at=now
    )
    session.add(operator)
    session.flush()
    return operator


def list_operators(session: Session) -> list[Operator]:
    return list(session.scalars(select(Operator).order_by(Operator.name)))


def remove_operator(session: Session, name: str) -> None:
    """Their sessions end with them."""
    found = session.scalar(select(Operator).where(Operator.name == name))
    if found is None:
        raise NotFound(f"no operator {name!r}")
    end_sessions_of(session, found.id)
    session.delete(found)
    session.flush()


def set_password(session: Session, name: str, password: str, *, now: datetime) -> None:
    """A new password: every session of the operator ends, and the name's count of sign-in
    attempts starts afresh (so a reset lets a locked-out operator straight back in)."""
    check_password(password)
    found = session.scalar(select(Operator).where(Operator.name == name))
    if found is None:
        raise NotFound(f"no operator {name!r}")
    found.password_hash = _hasher.hash(password)
    found.password_changed_at = now
    end_sessions_of(session, found.id)
    clear_name(session, name)
    session.flush()


def find_operator(session: Session, name: str) -> Operator | None:
    return session.scalar(select(Operator).where(Operator.name == name))


def verify_password(session: Session, name: str, password: str) -> Operator | None:
    """The operator, if ``password`` is theirs. Count the attempt first (sign_in_limits)."""
    operator = find_operator(session, name)
    if operator is None:
        _verify(_DUMMY_HASH, password)
        return None
    if not _verify(operator.password_hash, password):
        return None
    if _hasher.check_needs_rehash(operator.password_hash):
        operator.password_hash = _hasher.hash(password)
    return operator


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def record_action(
    session: Session,
    actor: str,
    action: str,
    *,
    now: datetime,
    conversation_id: uuid.UUID | None = None,
    customer_id: uuid.UUID | None = None,
    **detail: Any,
) -> None:
    session.add(
        OperatorAction(
            actor=actor,
            action=action,
            conversation_id=conversation_id,
            customer_id=customer_id,
            detail=detail,
            created_at=now,
        )
    )
    session.flush()


def actions_on(
    session: Session, conversation_id: uuid.UUID, limit: int = 50
) -> list[OperatorAction]:
    """What operators did in a conversation, oldest first."""
    rows = session.scalars(
        select(OperatorAction)
        .where(OperatorAction.conversation_id == conversation_id)
        .order_by(OperatorAction.id.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))
