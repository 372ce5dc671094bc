"""Wrap-up after every finish: summary on the conversation and in the customer's memory,
and one ``conversation.finished`` event. Exactly once, however often it is woken."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from agent.catalog import AgentCatalog
from agent.runtime import summarize
from conversations.db import rowcount, session_factory, transaction
from conversations.models import Conversation, ConversationEvent, Message
from conversations.states import ConversationStatus, Direction
from conversations.transcript import MessageView
from conversations.types import utcnow
from memory.store import MemoryKind, remember

FINISHED_EVENT = "conversation.finished"
SUMMARY_WINDOW = 200  # the summary reads at most this many of the latest messages


def wrap_up(
    conversation_id: uuid.UUID,
    *,
    engine: Engine,
    agents: AgentCatalog,
    clock: Callable[[], datetime] = utcnow,
) -> bool:
    """Return True if this call recorded the wrap-up, False if already done or not finished."""
    with session_factory(engine)() as session:
        conv = session.get(Conversation, conversation_id)
        if conv is None or conv.status != ConversationStatus.FINISHED or conv.wrapped_up_at:
            return False
        rows = session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.id.desc())
            .limit(SUMMARY_WINDOW)
        ).all()
        outbound = session.scalar(
            select(func.count())
            .select_from(Message)
            .where(
                Message.conversation_id == conversation_id, Message.direction == Direction.OUTBOUND
            )
        )
    messages = [
        MessageView(m.id, m.direction, m.role, m.channel, m.body, m.created_at)
        for m in reversed(rows)
    ]
    # The model may take a while: no transaction is open here.
    summary = summarize(agents.for_service(conv.service), messages, conv.finish_reason)
    now = clock()
    finished_at = conv.finished_at or now
    payload = {
        "conversation_id": str(conv.id),
        "customer_id": str(conv.customer_id),
        "service": conv.service,
        "channel": conv.channel,
        "finish_reason": conv.finish_reason,
        "summary": summary,
        "started_at": conv.created_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "duration_seconds": round((finished_at - conv.created_at).total_seconds(), 3),
        "messages": {"inbound": conv.inbound_count, "outbound": outbound or 0},
    }
    try:
        with transaction(engine) as session:
            won = session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.wrapped_up_at.is_(None))
                .values(summary=summary, wrapped_up_at=now)
                .execution_options(synchronize_session=False)
            )
            if rowcount(won) != 1:
                return False
            session.add(
                ConversationEvent(
                    conversation_id=conv.id, kind=FINISHED_EVENT, payload=payload, created_at=now
                )
            )
            remember(
                session,
                customer_id=conv.customer_id,
                conversation_id=conv.id,
                kind=MemoryKind.SUMMARY,
                text=summary,
                now=now,
            )
    except IntegrityError:
        return False  # a concurrent wrap-up recorded the event first
    return True
