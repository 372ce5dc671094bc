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

from conversations import webhook_outbox
from conversations.models import Event, Message

STARTED = "conversation.started"
RECEIVED = "message.received"  # a customer's message was stored
CREATED = "message.created"  # a reply was written (agent, operator, system): sent after commit
SENT = "message.sent"  # the outbox handed a reply to its provider (or the dev sink)
DELIVERY_UPDATED = "message.delivery_updated"  # a provider's status callback moved a reply on
TURN_COMPLETED = "turn.completed"  # data.handled: the customer messages the turn answered
# A customer's message cancelled the model request a turn waited on; the turn asks again with
# it added (DOUBLE_TEXTING_<CHANNEL>=interrupt). data.message_ids: the messages it added.
INTERRUPTED = "turn.interrupted"
HANDOFF = "conversation.handoff"
HANDBACK = "conversation.handback"
# Stored, not answered: data.reason; LIMITED also data.limit (the LIMIT_* setting it hit).
HELD = "conversation.held"
LIMITED = "conversation.limited"
RELEASED = "conversation.released"  # an operator let a held conversation's turn run
ENDED = "conversation.ended"  # written as it finishes: the live stream's end-session
FINISHED = "conversation.finished"  # written by its wrap-up: summary, counts and usage
ERASED = "customer.erased"  # conversation_id NULL, data {customer_id}: nothing else is left

# What event webhooks and GET /v1/events offer. message.created, turn.completed and
# conversation.ended are the live stream's own (a reply written but not yet sent; a turn's
# bookkeeping; the end as it happens): a webhook says message.sent once a reply is really out,
# and conversation.finished once its wrap-up has the summary. Both are events of their own,
# written when they happen, so an endpoint receives them in id order with the rest.
WEBHOOK_TYPES = (
    STARTED,
    RECEIVED,
    SENT,
    DELIVERY_UPDATED,
    HANDOFF,
    HANDBACK,
    HELD,
    LIMITED,
    RELEASED,
    FINISHED,
    ERASED,
)
_FANNED_OUT_AT_WRITE = frozenset(WEBHOOK_TYPES)


def record(
    session: Session,
    conversation_id: uuid.UUID | None,
    type: str,
    now: datetime,
    **data: Any,
) -> None:
    _write(session, [{"conversation_id": conversation_id, "type": type, "data": data}], now)


def record_many(
    session: Session,
    conversation_ids: Iterable[uuid.UUID],
    type: str,
    now: datetime,
    **data: Any,
) -> None:
    """The same event for each conversation (a sweep closing a batch), one INSERT."""
    _write(
        session,
        [{"conversation_id": cid, "type": type, "data": data} for cid in conversation_ids],
        now,
    )


def message_events(
    session: Session,
    conversation_id: uuid.UUID,
    message_ids: Sequence[int],
    type: str,
    now: datetime,
    **data: Any,
) -> None:
    _write(
        session,
        [
            {"conversation_id": conversation_id, "type": type, "data": {"message_id": mid, **data}}
            for mid in message_ids
        ],
        now,
    )


def messages_events(
    session: Session,
    messages: Iterable[tuple[uuid.UUID, int]],
    type: str,
    now: datetime,
) -> None:
    """One event per (conversation, message) pair, one INSERT: a sweep's replies."""
    _write(
        session,
        [
            {"conversation_id": cid, "type": type, "data": {"message_id": mid}}
            for cid, mid in messages
        ],
        now,
    )


def _write(session: Session, rows: list[dict[str, Any]], now: datetime) -> None:
    """Insert events and, in the same transaction, what each webhook endpoint is owed of
    them (the event outbox): an event that rolls back is owed to no one."""
    if not rows:
        return
    for row in rows:
        row["created_at"] = now
    if rows[0]["type"] not in _FANNED_OUT_AT_WRITE:
        session.connection().execute(insert(Event), rows)
        return
    ids = session.scalars(
        insert(Event).returning(Event.id, sort_by_parameter_order=True), rows
    ).all()
    webhook_outbox.fan_out(
        session,
        [
            webhook_outbox.Written(event_id, row["conversation_id"], row["type"])
            for event_id, row in zip(ids, rows, strict=True)
        ],
        now,
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
    conversation_id: uuid.UUID | None
    type: str
    data: dict[str, Any]
    created_at: datetime
    message: ShownMessage | None = None


def events_after(
    session: Session,
    conversation_id: uuid.UUID,
    after: int,
    *,
    limit: int = 500,
    types: Iterable[str] | None = None,
) -> list[StoredEvent]:
    """The conversation's events with a cursor past ``after``, oldest first, with the
    messages they name (an erased message's event is left out: nothing to show)."""
    query = select(Event.id, Event.conversation_id, Event.type, Event.data, Event.created_at).where(
        Event.conversation_id == conversation_id, Event.id > after
    )
    if types is not None:
        query = query.where(Event.type.in_(list(types)))
    rows = session.execute(query.order_by(Event.id).limit(limit)).all()
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
