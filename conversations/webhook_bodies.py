"""What a webhook receiver (and ``GET /v1/events``) reads of an event:
``{"type", "id", "timestamp", "data"}``, built from the event row when it is sent.

The event refers to messages by id; the body carries the message as it is now, so an
erasure (which deletes the event with the message) leaves nothing to send.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from conversations.events import WEBHOOK_TYPES
from conversations.models import Conversation, Event, Message
from conversations.types import iso


def event_id(row_id: int) -> str:
    """The public id of an event: the body's ``id`` and the ``webhook-id`` header, the same
    on every retry and replay, so receivers dedupe on it."""
    return f"evt_{row_id}"


def bodies(session: Session, event_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Event row id → its body."""
    return {
        row_id: body
        for row_id, body in read(session, Event.id.in_(list(event_ids)), limit=len(event_ids))
    }


def read(
    session: Session, *where: ColumnElement[bool], limit: int
) -> list[tuple[int, dict[str, Any]]]:
    """(cursor, body) of the webhook-catalogue events matching ``where``, oldest first."""
    rows = session.execute(
        select(Event.id, Event.conversation_id, Event.type, Event.data, Event.created_at)
        .where(Event.type.in_(WEBHOOK_TYPES), *where)
        .order_by(Event.id)
        .limit(limit)
    ).all()
    conversation_ids = {r.conversation_id for r in rows if r.conversation_id is not None}
    conversations = {
        c.id: c
        for c in session.execute(
            select(
                Conversation.id,
                Conversation.customer_id,
                Conversation.service,
                Conversation.channel,
            ).where(Conversation.id.in_(conversation_ids))
        )
    }
    message_ids = [r.data["message_id"] for r in rows if "message_id" in (r.data or {})]
    messages = {
        m.id: m
        for m in session.execute(
            select(
                Message.id,
                Message.direction,
                Message.role,
                Message.channel,
                Message.body,
                Message.delivery_status,
                Message.created_at,
            ).where(Message.id.in_(message_ids))
        )
    }
    found = []
    for r in rows:
        data: dict[str, Any] = {}
        conv = conversations.get(r.conversation_id) if r.conversation_id else None
        if conv is not None:
            data |= {
                "conversation_id": str(conv.id),
                "customer_id": str(conv.customer_id),
                "service": conv.service,
                "channel": conv.channel,
            }
        stored = dict(r.data or {})
        message_id = stored.pop("message_id", None)
        if message_id is not None:
            m = messages.get(message_id)
            if m is None:
                continue  # erased with its conversation since: nothing to tell
            data["message"] = {
                "id": m.id,
                "direction": m.direction,
                "role": m.role,
                "channel": m.channel,
                "text": m.body,
                "delivery_status": m.delivery_status,
                "created_at": iso(m.created_at),
            }
        data |= stored
        found.append(
            (
                r.id,
                {
                    "type": r.type,
                    "id": event_id(r.id),
                    "timestamp": iso(r.created_at),
                    "data": data,
                },
            )
        )
    return found


def filters(
    conversation_id: uuid.UUID | None, type: str | None, after: int
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Event.id > after]
    if conversation_id is not None:
        where.append(Event.conversation_id == conversation_id)
    if type is not None:
        where.append(Event.type == type)
    return where
