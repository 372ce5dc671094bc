"""The conversation event log: written in the transaction of each change, read by streams.

A row per thing a watcher of the conversation would want to know, in commit order; its id is
the cursor a stream resumes from. Messages are referred to by id and read when the event is
shown, so the text lives in one place and an erasure removes it from the log too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from conversations.models import Event, Message

STARTED = "conversation.started"
RECEIVED = "message.received"  # a customer's message was stored
CREATED = "message.created"  # a reply was written (agent, operator, system): sent after commit
TURN_COMPLETED = "turn.completed"  # data.handled: the customer messages the turn answered
HANDOFF = "conversation.handoff"
HANDBACK = "conversation.handback"
FINISHED = "conversation.finished"


def record(
    session: Session,
    conversation_id: uuid.UUID,
    type: str,
    now: datetime,
    **data: Any,
) -> None:
    record_many(session, [conversation_id], type, now, **data)


def record_many(
    session: Session,
    conversation_ids: Iterable[uuid.UUID],
    type: str,
    now: datetime,
    **data: Any,
) -> None:
    """The same event for each conversation (a sweep closing a batch), one INSERT."""
    rows = [
        {"conversation_id": cid, "type": type, "data": data, "created_at": now}
        for cid in conversation_ids
    ]
    if rows:
        session.connection().execute(insert(Event), rows)


def message_events(
    session: Session,
    conversation_id: uuid.UUID,
    message_ids: Sequence[int],
    type: str,
    now: datetime,
) -> None:
    if message_ids:
        session.connection().execute(
            insert(Event),
            [
                {
                    "conversation_id": conversation_id,
                    "type": type,
                    "data": {"message_id": mid},
                    "created_at": now,
                }
                for mid in message_ids
            ],
        )


@dataclass(frozen=True, slots=True)
class ShownMessage:
    id: int
    direction: str
    role: str
    text: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredEvent:
    cursor: int
    conversation_id: uuid.UUID
    type: str
    data: dict[str, Any]
    created_at: datetime
    message: ShownMessage | None = None


def events_after(
    session: Session, conversation_id: uuid.UUID, after: int, *, limit: int = 500
) -> list[StoredEvent]:
    """The conversation's events with a cursor past ``after``, oldest first, with the
    messages they name (an erased message's event is left out: nothing to show)."""
    rows = session.execute(
        select(Event.id, Event.conversation_id, Event.type, Event.data, Event.created_at)
        .where(Event.conversation_id == conversation_id, Event.id > after)
        .order_by(Event.id)
        .limit(limit)
    ).all()
    wanted = [r.data["message_id"] for r in rows if "message_id" in (r.data or {})]
    messages = (
        {
            m.id: ShownMessage(m.id, m.direction, m.role, m.body, m.created_at)
            for m in session.execute(
                select(
                    Message.id, Message.direction, Message.role, Message.body, Message.created_at
                ).where(Message.id.in_(wanted))
            )
        }
        if wanted
        else {}
    )
    found = []
    for r in rows:
        data = dict(r.data or {})
        message = None
        if "message_id" in data:
            message = messages.get(data["message_id"])
            if message is None:
                continue
        found.append(StoredEvent(r.id, r.conversation_id, r.type, data, r.created_at, message))
    return found


def last_cursor(session: Session, conversation_id: uuid.UUID) -> int:
    latest = session.scalar(
        select(Event.id)
        .where(Event.conversation_id == conversation_id)
        .order_by(Event.id.desc())
        .limit(1)
    )
    return latest or 0
