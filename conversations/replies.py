"""Outbound messages into the outbox, in the caller's transaction; delivery after commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from conversations import statements
from conversations.models import Message, OutboxRow
from conversations.states import Direction, OutboxStatus, Role


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
    return conn.execute(
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
            {"conversation_id": r.conversation_id, "direction": Direction.OUTBOUND, "role": role,
             "channel": r.channel, "address": r.to, "body": r.text, "media": [], "meta": {},
             "delivery_status": "pending", "created_at": now}
            for r in replies
        ],
    ).all()  # fmt: skip
    return list(
        session.scalars(
            insert(OutboxRow).returning(OutboxRow.id, sort_by_parameter_order=True),
            [
                {"message_id": mid, "conversation_id": r.conversation_id, "channel": r.channel,
                 "to_address": r.to, "body": r.text, "status": OutboxStatus.PENDING,
                 "attempts": 0, "next_attempt_at": now, "idempotency_key": uuid.uuid4(),
                 "via_sink": False, "created_at": now, "updated_at": now}
                for mid, r in zip(message_ids, replies, strict=True)
            ],
        ).all()
    )  # fmt: skip
