"""The outbox: a row is the promise to send one message, written in the same transaction as
what decided to send it (enqueue), and kept by the deliver task (claim, mark, status).

pending ──claim──► sending ──► sent
   ▲                  │  └───► failed            (permanent provider error, or out of attempts)
   └── retry (backoff)┘  ambiguous: stays sending until reconciled with the provider
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conversations import events, statements
from conversations import outbox_statements as sql
from conversations.db import rowcount
from conversations.models import Conversation, DeliveryEvent, Message, OutboxRow
from conversations.states import DELIVERY_RANK, Direction, OutboxStatus, Role

# --- enqueue ------------------------------------------------------------------------------


def enqueue_reply(
    session: Session,
    *,
    conversation_id: uuid.UUID,
    channel: str,
    to: str,
    text: str,
    role: Role,
    turn: int | None,
    now: datetime,
) -> int:
    """Write an outbound message and its outbox row; delivery happens after commit."""
    conn = session.connection()
    message_id = conn.execute(
        statements.INSERT_MESSAGE,
        {
            "conversation_id": conversation_id,
            "direction": Direction.OUTBOUND,
            "role": role,
            "channel": channel,
            "address": to,
            "body": text,
            "turn": turn,
            "delivery_status": "pending",
            "created_at": now,
        },
    ).scalar_one()
    events.message_events(session, conversation_id, [message_id], events.CREATED, now)
    outbox_id: int = conn.execute(
        statements.INSERT_OUTBOX_ROW,
        {
            "message_id": message_id,
            "conversation_id": conversation_id,
            "channel": channel,
            "to_address": to,
            "body": text,
            "status": OutboxStatus.PENDING,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
    ).scalar_one()
    return outbox_id


@dataclass(frozen=True, slots=True)
class Reply:
    conversation_id: uuid.UUID
    channel: str
    to: str
    text: str


def enqueue_replies(
    session: Session, replies: list[Reply], *, role: Role, now: datetime
) -> list[int]:
    """``enqueue_reply`` for many at once: two multi-row INSERTs, for sweeps over batches."""
    if not replies:
        return []
    message_ids = session.scalars(
        insert(Message).returning(Message.id, sort_by_parameter_order=True),
        [
            {
                "conversation_id": r.conversation_id,
                "direction": Direction.OUTBOUND,
                "role": role,
                "channel": r.channel,
                "address": r.to,
                "body": r.text,
                "media": [],
                "meta": {},
                "delivery_status": "pending",
                "created_at": now,
            }
            for r in replies
        ],
    ).all()
    events.messages_events(
        session,
        [(r.conversation_id, mid) for mid, r in zip(message_ids, replies, strict=True)],
        events.CREATED,
        now,
    )
    return list(
        session.scalars(
            insert(OutboxRow).returning(OutboxRow.id, sort_by_parameter_order=True),
            [
                {
                    "message_id": mid,
                    "conversation_id": r.conversation_id,
                    "channel": r.channel,
                    "to_address": r.to,
                    "body": r.text,
                    "status": OutboxStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "idempotency_key": uuid.uuid4(),
                    "via_sink": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for mid, r in zip(message_ids, replies, strict=True)
            ],
        ).all()
    )


# --- claim, mark, status -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """An outbox row as claimed for a send (or a reconcile): what delivery reads of it."""

    id: int
    message_id: int
    conversation_id: uuid.UUID
    channel: str
    to_address: str
    body: str
    attempts: int
    idempotency_key: uuid.UUID
    via_sink: bool
    last_error: str | None
    sending_started_at: datetime | None
    created_at: datetime


def claim_for_send(session: Session, outbox_id: int, *, now: datetime) -> Claimed | None:
    """Mark a due pending row ``sending`` before the provider call; None if not ours to send."""
    row = session.execute(sql.CLAIM_FOR_SEND, {"outbox_id": outbox_id, "now": now}).first()
    return Claimed(*row) if row is not None else None


def claim_for_reconcile(
    session: Session, outbox_id: int, *, stale_before: datetime, now: datetime
) -> Claimed | None:
    """Take a row whose send outcome is unknown (stuck in ``sending``) to reconcile it."""
    row = session.execute(
        sql.CLAIM_FOR_RECONCILE,
        {"outbox_id": outbox_id, "stale_before": stale_before, "now": now},
    ).first()
    return Claimed(*row) if row is not None else None


def mark_sent(
    session: Session,
    row: Claimed,
    *,
    provider_id: str,
    delivery_status: str,
    via_sink: bool,
    now: datetime,
) -> bool:
    lock_provider_id(session, row.channel, provider_id)
    moved = session.execute(
        sql.MARK_SENT,
        {"outbox_id": row.id, "provider_id": provider_id, "via_sink": via_sink, "updated_at": now},
    )
    if rowcount(moved) != 1:
        return False  # settled meanwhile (reconciled, or failed): leave the message alone
    # A status callback can beat this commit (Twilio calls back as soon as it queues): keep
    # the most advanced status seen for this provider id.
    seen = session.scalars(
        sql.DELIVERY_STATUSES, {"channel": row.channel, "provider_id": provider_id}
    ).all()
    best = max([delivery_status, *seen], key=lambda s: DELIVERY_RANK.get(s, -1))
    session.execute(
        sql.SET_MESSAGE_DELIVERY,
        {"message_id": row.message_id, "provider_id": provider_id, "delivery_status": best},
    )
    events.message_events(
        session, row.conversation_id, [row.message_id], events.SENT, now, via_sink=via_sink
    )
    return True


def provider_ids_taken(session: Session, channel: str, provider_ids: list[str]) -> set[str]:
    if not provider_ids:
        return set()
    return set(
        session.scalars(
            select(OutboxRow.provider_id).where(
                OutboxRow.channel == channel, OutboxRow.provider_id.in_(provider_ids)
            )
        )
    )


def lock_provider_id(session: Session, channel: str, provider_id: str) -> None:
    """Serialize a status callback with the commit that records the same provider id.

    Under READ COMMITTED each could otherwise miss the other's uncommitted row and leave the
    delivery status behind. SQLite's BEGIN IMMEDIATE already serializes writers.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sql.ADVISORY_XACT_LOCK, {"k": f"{channel}:{provider_id}"})


def mark_retry(
    session: Session, row: Claimed, *, error: str, next_attempt_at: datetime, now: datetime
) -> None:
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.id == row.id, OutboxRow.status == OutboxStatus.SENDING)
        .values(
            status=OutboxStatus.PENDING,
            next_attempt_at=next_attempt_at,
            last_error=error[:2000],
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def mark_ambiguous(session: Session, row: Claimed, *, error: str, now: datetime) -> None:
    """Leave the row ``sending``: the reconcile sweep looks it up before any resend."""
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.id == row.id, OutboxRow.status == OutboxStatus.SENDING)
        .values(last_error=f"ambiguous: {error}"[:2000], updated_at=now)
        .execution_options(synchronize_session=False)
    )


def mark_failed(session: Session, row: Claimed, *, error: str, now: datetime) -> None:
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.id == row.id, OutboxRow.status == OutboxStatus.SENDING)
        .values(status=OutboxStatus.FAILED, last_error=error[:2000], updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Message)
        .where(Message.id == row.message_id)
        .values(delivery_status="failed", delivery_error=error[:2000])
        .execution_options(synchronize_session=False)
    )


def backoff(attempts: int, *, base: float, cap: float = 3600.0) -> timedelta:
    """Exponential: base, 2·base, 4·base, … capped (below the broker visibility timeout)."""
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


def record_delivery_status(
    session: Session,
    *,
    channel: str,
    provider_id: str,
    status: str,
    error_code: str | None,
    now: datetime,
) -> bool:
    """Apply a provider status callback once; a status never moves backwards.

    Returns False for a duplicate (same provider id and status seen before).
    """
    lock_provider_id(session, channel, provider_id)
    try:
        with session.begin_nested():
            session.add(
                DeliveryEvent(
                    channel=channel,
                    provider_id=provider_id,
                    status=status,
                    error_code=error_code,
                    received_at=now,
                )
            )
            session.flush()
    except IntegrityError:
        return False
    rank = DELIVERY_RANK.get(status)
    if rank is None:
        return True
    lower = [name for name, r in DELIVERY_RANK.items() if r < rank]
    values: dict[str, object] = {"delivery_status": status}
    if error_code:
        values["delivery_error"] = f"provider error {error_code}"
    moving = (
        Message.channel == channel,
        Message.provider_id == provider_id,
        Message.delivery_status.in_(lower),
    )
    # The lock above serializes callbacks of this provider id: what is read here is what the
    # update below moves, and each move is reported once.
    moved = session.execute(select(Message.id, Message.conversation_id).where(*moving)).all()
    session.execute(
        update(Message).where(*moving).values(**values).execution_options(synchronize_session=False)
    )
    for message_id, conversation_id in moved:
        events.message_events(
            session,
            conversation_id,
            [message_id],
            events.DELIVERY_UPDATED,
            now,
            status=status,
            error_code=error_code,
        )
    return True


@dataclass(frozen=True, slots=True)
class Thread:
    reply_to_id: str | None
    reply_to_meta: dict[str, Any]
    context: dict[str, Any]


def service_of(session: Session, row: Claimed) -> str:
    """The service of the conversation ``row`` belongs to (it may have its own sender)."""
    return (
        session.scalar(select(Conversation.service).where(Conversation.id == row.conversation_id))
        or ""
    )


def thread_of(session: Session, row: Claimed) -> Thread:
    """What a threading channel needs to send ``row``: the customer's latest message on the
    row's channel before it (provider id, metadata) and the conversation's context."""
    latest = session.execute(
        select(Message.provider_id, Message.meta)
        .where(
            Message.conversation_id == row.conversation_id,
            Message.channel == row.channel,
            Message.direction == Direction.INBOUND,
            Message.role == Role.CUSTOMER,
            Message.id < row.message_id,
        )
        .order_by(Message.id.desc())
        .limit(1)
    ).first()
    context = session.scalar(
        select(Conversation.context).where(Conversation.id == row.conversation_id)
    )
    return Thread(
        reply_to_id=latest.provider_id if latest else None,
        reply_to_meta=dict(latest.meta or {}) if latest else {},
        context=dict(context or {}),
    )
