"""The chat channel's side of the live API: open a chat, say something in it, and where a
said message's events begin. ``api/live_routes.py`` parses HTTP and streams; what a chat is
(its envelope, which conversations take a message) is decided here, in one transaction each.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conversations import events
from conversations.channel_names import check_text
from conversations.envelope import InboundMessage
from conversations.errors import Conflict, ConversationNotFound, TransitionRefused
from conversations.ingest import ingest
from conversations.models import Conversation, Event
from conversations.outbound import start_outbound
from conversations.settings import Settings
from conversations.states import ConversationStatus

CHAT = "chat"


def open_chat(
    session: Session,
    settings: Settings,
    *,
    service: str,
    user_id: str | None,
    customer_id: uuid.UUID | None,
    context: dict[str, Any],
    message: str | None,
    now: datetime,
) -> uuid.UUID:
    """A new chat of ``service`` with the person, holding their first message if any (else
    the agent writes first). A second open chat for them and the service is a 409 naming it."""
    started = start_outbound(
        session,
        service=service,
        channel=CHAT,
        to=user_id,
        customer_id=customer_id,
        context=context,
        message=None,
        now=now,
        defaults=settings.default_policies(),
        region=settings.default_region,
    )
    if message is not None:
        check_text(CHAT, message, "message")
        conversation = session.get_one(Conversation, started.conversation_id)
        ingest(
            session,
            _said(conversation.address, message, None),
            service=service,
            now=now,
            defaults=settings.default_policies(),
            help_text=settings.help_text,
        )
    return started.conversation_id


def say(
    session: Session,
    settings: Settings,
    conversation_id: uuid.UUID,
    text: str,
    *,
    idempotency_key: str | None,
    now: datetime,
) -> tuple[int, int]:
    """Store what the person said in their chat: (its message id, the cursor its events come
    after). With ``idempotency_key`` a retry stores nothing and replays from the first time."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise ConversationNotFound(f"no conversation {conversation_id}")
    if conversation.channel != CHAT:
        raise TransitionRefused(
            conversation.status,
            f"conversation {conversation_id} is on {conversation.channel}, not chat: "
            f"an operator writes to it with POST /v1/conversations/{conversation_id}/messages",
        )
    if conversation.status == ConversationStatus.FINISHED:
        raise TransitionRefused(conversation.status, f"conversation {conversation_id} is finished")
    check_text(CHAT, text, "text")
    before = events.last_cursor(session, conversation_id)
    result = ingest(
        session,
        _said(conversation.address, text, idempotency_key),
        service=conversation.service,
        now=now,
        defaults=settings.default_policies(),
        help_text=settings.help_text,
    )
    if result.message_id is None:  # the key's first message was erased with its customer
        raise Conflict("Idempotency-Key names a message since erased: use another key")
    if result.duplicate:  # a retry: replay from the message it stored the first time
        before = _cursor_before(session, conversation_id, result.message_id)
    return result.message_id, before


def exists(session: Session, conversation_id: uuid.UUID) -> bool:
    return session.get(Conversation, conversation_id) is not None


def _said(address: str, text: str, key: str | None) -> InboundMessage:
    return InboundMessage(
        channel=CHAT,
        provider_id=f"live:{key}" if key else f"live:{uuid.uuid4()}",
        sender=address,
        text=text,
        metadata={"via": "live API"},
    )


def _cursor_before(session: Session, conversation_id: uuid.UUID, message_id: int) -> int:
    first = session.scalar(
        select(Event.id)
        .where(Event.conversation_id == conversation_id, Event.type == events.RECEIVED)
        .where(Event.data["message_id"].as_integer() == message_id)
    )
    return (first or 1) - 1
