"""Wrap-up after every finish: summary on the conversation and in the customer's memory, and
the conversation's ``conversation.finished`` event completed (summary, finish reason,
duration, message counts, token usage) and handed to the webhook endpoints that want it.
Exactly once, however often it is woken.

The event itself was written when the conversation finished (the live streams end on it);
the wrap-up fills in what only it knows, in its own transaction, and that transaction is the
one that owes it to webhook endpoints: a receiver gets one conversation.finished, complete.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, func, select, update

from agent import journal_store
from agent.catalog import AgentCatalog
from agent.runtime import summarize
from conversations import events
from conversations.db import rowcount, session_factory, transaction
from conversations.models import Conversation, Message, TurnRecord
from conversations.states import ConversationStatus, Direction, Role
from conversations.transcript import MessageView
from conversations.types import iso, utcnow
from memory.store import MemoryKind, remember

SUMMARY_WINDOW = 200  # the summary reads at most this many of the latest messages


def wrap_up(
    conversation_id: uuid.UUID,
    *,
    engine: Engine,
    agents: AgentCatalog,
    clock: Callable[[], datetime] = utcnow,
) -> bool:
    """Return True if this call recorded the wrap-up, False if already done or not finished.
    The caller wakes the webhook sender for the conversation when True."""
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
        usage = session.execute(
            select(
                func.coalesce(func.sum(TurnRecord.input_tokens), 0),
                func.coalesce(func.sum(TurnRecord.output_tokens), 0),
                func.coalesce(func.sum(TurnRecord.model_requests), 0),
                func.count(TurnRecord.id),
            ).where(TurnRecord.conversation_id == conversation_id)
        ).one()
    messages = [
        MessageView(
            m.id,
            m.direction,
            m.role,
            m.channel,
            m.body,
            m.created_at,
            automatic=m.direction == Direction.OUTBOUND and m.role == Role.AGENT and m.turn is None,
        )
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
        "started_at": iso(conv.created_at),
        "finished_at": iso(finished_at),
        "duration_seconds": round((finished_at - conv.created_at).total_seconds(), 3),
        "messages": {"inbound": conv.inbound_count, "outbound": outbound or 0},
        "usage": {
            "input_tokens": int(usage[0]),
            "output_tokens": int(usage[1]),
            "model_requests": int(usage[2]),
            "turns": int(usage[3]),
        },
    }
    with transaction(engine) as session:
        won = session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.wrapped_up_at.is_(None))
            .values(summary=summary, wrapped_up_at=now)
            .execution_options(synchronize_session=False)
        )
        if rowcount(won) != 1:
            return False  # a concurrent wrap-up won: it recorded all of this
        # Its own event, written now: after everything the conversation did before it ended
        # (the goodbye's message.sent included), so endpoints receive it last, in id order.
        # Who and where are added to every body when it is sent (webhook_bodies.py).
        about = ("conversation_id", "customer_id", "service", "channel")
        stored = {k: v for k, v in payload.items() if k not in about}
        events.record(session, conversation_id, events.FINISHED, now, **stored)
        remember(
            session,
            customer_id=conv.customer_id,
            conversation_id=conv.id,
            kind=MemoryKind.SUMMARY,
            text=summary,
            now=now,
        )
        # A turn that crashed and will never be retried (an operator, the inactivity sweep
        # or STOP finished the conversation) leaves its step journal: it goes with the rest.
        journal_store.prune(session, conversation_id)
    return True
