"""The inactivity sweep: nudge, then close, what is due — exactly once, in batches.

Reads only due rows through (status, expires_at) / (status, nudge_due_at). On PostgreSQL
the batch is claimed with FOR UPDATE SKIP LOCKED, so two sweeps split the work instead of
queueing behind each other; on both backends the write is a conditional update
(``WHERE status = 'suspended' AND expires_at <= :now``) that a second sweep finds already
done. A conversation with a pending inbound message is never closed under it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, exists, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from conversations import events
from conversations.models import PENDING_MESSAGE, Conversation, Message
from conversations.outbox import Reply, enqueue_replies
from conversations.states import ConversationStatus, FinishReason, Role
from conversations.timeout_store import load_policies, policy_for
from conversations.timeouts import Policy, deadlines


@dataclass(frozen=True, slots=True)
class SweepResult:
    closed: list[uuid.UUID]
    outbox_ids: list[int]


def _no_pending() -> ColumnElement[bool]:
    return ~exists().where(
        Message.conversation_id == Conversation.id,
        PENDING_MESSAGE,
    )


# A deadline column of Conversation: expires_at or nudge_due_at.
Deadline = InstrumentedAttribute[datetime | None]


def due_query(
    column: Deadline, *, now: datetime, limit: int, skip_locked: bool
) -> Select[uuid.UUID]:
    """Suspended conversations whose ``column`` deadline passed: an index range scan."""
    query = (
        select(Conversation.id)
        .where(Conversation.status == ConversationStatus.SUSPENDED, column <= now)
        .order_by(column)
        .limit(limit)
    )
    return query.with_for_update(skip_locked=True) if skip_locked else query


def _claim_batch(
    session: Session, column: Deadline, *, now: datetime, limit: int
) -> list[uuid.UUID]:
    # SKIP LOCKED: a second sweep takes the next rows instead of waiting for these.
    skip_locked = session.get_bind().dialect.name == "postgresql"
    return list(session.scalars(due_query(column, now=now, limit=limit, skip_locked=skip_locked)))


def send_due_nudges(
    session: Session, *, now: datetime, limit: int, defaults: Mapping[str, Policy]
) -> SweepResult:
    ids = _claim_batch(session, Conversation.nudge_due_at, now=now, limit=limit)
    if not ids:
        return SweepResult([], [])
    nudged = session.scalars(
        update(Conversation)
        .where(
            Conversation.id.in_(ids),
            Conversation.status == ConversationStatus.SUSPENDED,
            Conversation.nudge_due_at <= now,
            Conversation.nudge_sent_at.is_(None),
            _no_pending(),
        )
        .values(nudge_sent_at=now, nudge_due_at=None)
        .returning(Conversation.id)
        .execution_options(synchronize_session=False)
    ).all()
    governed = _governed(session, list(nudged), defaults)
    for conv, policy in governed:
        # However overdue it was, the nudge gets its nudge_before to be answered.
        conv.expires_at, _ = deadlines(policy, conv.last_activity_at, nudged_at=now)
    session.flush()
    outbox_ids = _queue(session, governed, lambda p: p.nudge_message, now)
    return SweepResult(list(nudged), outbox_ids)


def close_expired(
    session: Session, *, now: datetime, limit: int, defaults: Mapping[str, Policy]
) -> SweepResult:
    ids = _claim_batch(session, Conversation.expires_at, now=now, limit=limit)
    if not ids:
        return SweepResult([], [])
    closed = session.scalars(
        update(Conversation)
        .where(
            Conversation.id.in_(ids),
            Conversation.status == ConversationStatus.SUSPENDED,
            Conversation.expires_at <= now,
            _no_pending(),
        )
        .values(
            status=ConversationStatus.FINISHED,
            finish_reason=FinishReason.TIMEOUT,
            finished_at=now,
            updated_at=now,
            expires_at=None,
            nudge_due_at=None,
        )
        .returning(Conversation.id)
        .execution_options(synchronize_session=False)
    ).all()
    governed = _governed(session, list(closed), defaults)
    outbox_ids = _queue(session, governed, lambda p: p.closing_message, now)
    events.record_many(session, closed, events.ENDED, now, reason=FinishReason.TIMEOUT)
    return SweepResult(list(closed), outbox_ids)


def _governed(
    session: Session, ids: list[uuid.UUID], defaults: Mapping[str, Policy]
) -> list[tuple[Conversation, Policy]]:
    """The conversations ``ids``, each with the policy that governs it."""
    if not ids:
        return []
    policies = load_policies(session)
    rows = session.scalars(select(Conversation).where(Conversation.id.in_(ids)))
    return [(conv, policy_for(conv, policies, defaults)) for conv in rows]


def _queue(
    session: Session,
    governed: list[tuple[Conversation, Policy]],
    pick: Callable[[Policy], str | None],
    now: datetime,
) -> list[int]:
    """Queue the policy's nudge or closing message, in the transaction that decided it."""
    replies = [
        Reply(conv.id, conv.channel, conv.address, text)
        for conv, policy in governed
        if (text := pick(policy))
    ]
    return enqueue_replies(session, replies, role=Role.AGENT, now=now)
