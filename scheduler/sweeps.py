"""Sweeps: find work the broker lost. Each reads an index range, bounded by ``limit``.

Every wake-up they send may duplicate one already queued; the claims it leads to are
conditional updates, so a duplicate (or a second beat) is a no-op.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from conversations.models import PENDING_MESSAGE, Conversation, Message, OutboxRow
from conversations.states import ConversationStatus, OutboxStatus


@dataclass(frozen=True, slots=True)
class RedriveWork:
    turns: list[uuid.UUID]
    deliveries: list[int]
    reconciles: list[int]
    wrap_ups: list[uuid.UUID]


def conversations_to_wake(
    session: Session, *, now: datetime, grace: timedelta, limit: int
) -> list[uuid.UUID]:
    """Conversations with a pending message and no live turn.

    ``grace`` leaves fresh messages to the wake-up that ingest already sent.
    """
    query = (
        select(Conversation.id)
        .join(Message, Message.conversation_id == Conversation.id)
        .where(
            PENDING_MESSAGE,
            or_(
                and_(
                    Conversation.status == ConversationStatus.SUSPENDED,
                    Message.created_at <= now - grace,
                ),
                and_(
                    Conversation.status == ConversationStatus.RUNNING,
                    Conversation.lease_expires_at < now,
                ),
            ),
        )
        .distinct()
        .limit(limit)
    )
    found = list(session.scalars(query))
    # Outbound conversations whose opening the agent has yet to write (no inbound message).
    openings = (
        select(Conversation.id)
        .where(
            Conversation.wants_turn.is_(True),
            or_(
                and_(
                    Conversation.status == ConversationStatus.SUSPENDED,
                    Conversation.updated_at <= now - grace,
                ),
                and_(
                    Conversation.status == ConversationStatus.RUNNING,
                    Conversation.lease_expires_at < now,
                ),
            ),
        )
        .limit(limit)
    )
    return list(dict.fromkeys(found + list(session.scalars(openings))))


def outbox_to_send(session: Session, *, now: datetime, grace: timedelta, limit: int) -> list[int]:
    query = (
        select(OutboxRow.id)
        .where(
            OutboxRow.status == OutboxStatus.PENDING,
            OutboxRow.next_attempt_at <= now,
            OutboxRow.updated_at <= now - grace,
        )
        .order_by(OutboxRow.next_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def outbox_to_reconcile(
    session: Session, *, now: datetime, after: timedelta, limit: int
) -> list[int]:
    query = (
        select(OutboxRow.id)
        .where(OutboxRow.status == OutboxStatus.SENDING, OutboxRow.updated_at <= now - after)
        .order_by(OutboxRow.updated_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def conversations_to_wrap_up(
    session: Session, *, now: datetime, grace: timedelta, limit: int
) -> list[uuid.UUID]:
    query = (
        select(Conversation.id)
        .where(
            Conversation.status == ConversationStatus.FINISHED,
            Conversation.wrapped_up_at.is_(None),
            Conversation.finished_at <= now - grace,
        )
        .order_by(Conversation.finished_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def find_redrive_work(
    session: Session, *, now: datetime, grace: timedelta, reconcile_after: timedelta, limit: int
) -> RedriveWork:
    return RedriveWork(
        turns=conversations_to_wake(session, now=now, grace=grace, limit=limit),
        deliveries=outbox_to_send(session, now=now, grace=grace, limit=limit),
        reconciles=outbox_to_reconcile(session, now=now, after=reconcile_after, limit=limit),
        wrap_ups=conversations_to_wrap_up(session, now=now, grace=grace, limit=limit),
    )
