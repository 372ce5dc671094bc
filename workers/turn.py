"""One wake-up of a conversation: claim → rehydrate → agent → commit → release → re-check.

Stateless: everything is read from the database and written back; nothing is kept here
between messages, so any worker can take any conversation.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from agent.base import Agent, TurnContext
from agent.tools import BUILTIN_TOOLS, Toolbox, ToolContext
from channels.registry import get_channel
from conversations.db import session_factory, transaction
from conversations.errors import LeaseLost
from conversations.settings import Settings
from conversations.types import utcnow
from conversations.wakeup import Produced, Waker, publish
from memory.store import Memory, recall
from workers import turn_store

log = logging.getLogger(__name__)


def run_turn(
    conversation_id: uuid.UUID,
    *,
    engine: Engine,
    agent: Agent,
    settings: Settings,
    waker: Waker,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """Run one turn if the conversation has pending messages; return how many committed (0/1).

    One turn per task, so the task time limit bounds one model call, not a chain of them.
    """
    return 1 if _one_turn(conversation_id, engine, agent, settings, waker, clock) else 0


def _one_turn(
    conversation_id: uuid.UUID,
    engine: Engine,
    agent: Agent,
    settings: Settings,
    waker: Waker,
    clock: Callable[[], datetime],
) -> bool:
    token = uuid.uuid4()
    with session_factory(engine)() as session:
        # The claim commits on its own: its attempt count must survive a turn that crashes
        # while reading, or a poison message would never reach quarantine.
        with session.begin():
            attempts = turn_store.claim(
                session,
                conversation_id,
                token=token,
                now=clock(),
                lease_seconds=settings.lease_seconds,
            )
        if attempts is None:
            return False
        # Then the reads, in a second transaction of the same session.
        with session.begin():
            if attempts > settings.max_turn_attempts:
                turn_store.quarantine(
                    session, conversation_id, token=token, attempts=attempts, now=clock()
                )
                log.error(
                    "conversation %s quarantined after %d attempts", conversation_id, attempts - 1
                )
                return False
            snapshot = turn_store.rehydrate(
                session, conversation_id, window=settings.history_window
            )
            if not snapshot.new_messages and not snapshot.opening:
                # The claim raced the previous holder's commit on PostgreSQL (its WHERE was
                # re-checked on the new row, not the new messages): nothing to answer.
                turn_store.release(session, conversation_id, token=token, now=clock())
                return False
            memory = recall(
                session,
                snapshot.customer_id,
                now=clock(),
                retention=settings.memory_retention_delta,
            )

    # No transaction is open from here to the commit: the model may take seconds.
    try:
        outcome = _decide(snapshot, memory, agent, settings)
    except Exception as exc:
        with transaction(engine) as session:
            turn_store.release(session, conversation_id, token=token, now=clock(), error=repr(exc))
        log.exception("turn of conversation %s failed; released for retry", conversation_id)
        return False

    try:
        with transaction(engine) as session:
            result = turn_store.commit_turn(
                session,
                snapshot,
                outcome,
                token=token,
                now=clock(),
                defaults=settings.default_policies(),
            )
    except LeaseLost:
        log.warning("turn of conversation %s lost its lease; discarded", conversation_id)
        return False

    # more_pending: a message committed during the turn had a wake-up that found the
    # conversation running and did nothing; this one is the wake-up that is not lost.
    publish(
        waker,
        Produced.of(
            deliveries=result.outbox_ids,
            turns=[
                conversation_id if result.more_pending else None,
                result.reopened_conversation_id,
            ],
            wrap_ups=[conversation_id if result.status == "finished" else None],
        ),
    )
    return True


def _decide(
    snapshot: turn_store.TurnSnapshot, memory: list[Memory], agent: Agent, settings: Settings
) -> turn_store.TurnOutcome:
    context = TurnContext(
        conversation_id=snapshot.conversation_id,
        customer_id=snapshot.customer_id,
        service=snapshot.service,
        channel=snapshot.channel,
        turn_number=snapshot.turn_number,
        customer_message_count=snapshot.inbound_count,
        instructions=settings.agent_instructions,
        history=snapshot.history,
        new_messages=snapshot.new_messages,
        earlier=snapshot.earlier,
        memory=tuple(memory),
        customer_name=snapshot.customer_name,
        customer_attributes=snapshot.customer_attributes,
        context=snapshot.context,
        opening=snapshot.opening,
    )
    tool_ctx = ToolContext(
        conversation_id=snapshot.conversation_id,
        customer_id=snapshot.customer_id,
        idempotency_key=f"{snapshot.conversation_id}:{snapshot.turn_number}",
    )
    replies = agent.run_turn(context, Toolbox(BUILTIN_TOOLS, tool_ctx))
    channel = get_channel(snapshot.channel, settings)
    return turn_store.TurnOutcome(
        replies=[channel.shape(r) for r in replies],
        finish_reason=tool_ctx.effects.finish_reason,
        handoff_reason=tool_ctx.effects.handoff_reason,
        facts=list(tool_ctx.effects.facts),
    )
