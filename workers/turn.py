"""One wake-up of a conversation: claim → rehydrate → agent → commit → release → re-check.

Stateless: everything is read from the database and written back; nothing is kept here
between messages, so any worker can take any conversation.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from pydantic_ai.exceptions import ModelAPIError
from sqlalchemy import Engine

from agent import journal_store
from agent.base import TurnContext
from agent.catalog import AgentCatalog, kind_of
from agent.deps import TurnDeps
from agent.journal import Journal, answered_through
from agent.runtime import TurnLimits, model_name, run_agent_turn
from channels.registry import get_channel
from conversations import log_context
from conversations.db import session_factory, transaction
from conversations.errors import LeaseLost, TurnOverLimit
from conversations.lifecycle import hold
from conversations.metrics import LEASES_LOST, QUARANTINES, REPLY_SECONDS, TURN_SECONDS
from conversations.settings import Settings
from conversations.spending import limits_for
from conversations.types import utcnow
from conversations.wakeup import Produced, Waker, publish
from memory.store import Memory, recall
from workers import turn_store
from workers.arrivals import MessageArrivals

log = logging.getLogger(__name__)


def run_turn(
    conversation_id: uuid.UUID,
    *,
    engine: Engine,
    agents: AgentCatalog,
    settings: Settings,
    waker: Waker,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """Run one turn if the conversation has pending messages; return how many committed (0/1).

    One turn per task, so the task time limit bounds one model call, not a chain of them.
    """
    started = time.perf_counter()
    with log_context.bound(conversation_id=conversation_id):
        outcome = _one_turn(conversation_id, engine, agents, settings, waker, clock)
    TURN_SECONDS.labels(outcome).observe(time.perf_counter() - started)
    return 1 if outcome == "committed" else 0


def _one_turn(
    conversation_id: uuid.UUID,
    engine: Engine,
    agents: AgentCatalog,
    settings: Settings,
    waker: Waker,
    clock: Callable[[], datetime],
) -> str:
    """The turn's outcome, as ``dormouse_turn_duration_seconds`` labels it."""
    token = uuid.uuid4()
    started = time.perf_counter()
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
            return "skipped"
        if attempts > settings.max_turn_attempts:
            with session.begin():
                told = turn_store.quarantine(
                    session,
                    conversation_id,
                    token=token,
                    attempts=attempts,
                    now=clock(),
                    message=settings.quarantine_message,
                )
            if told is None:
                LEASES_LOST.inc()
                return "lease_lost"
            QUARANTINES.labels("attempts").inc()
            log.error(
                "conversation %s quarantined after %d attempts", conversation_id, attempts - 1
            )
            publish(waker, Produced.of(deliveries=told, changed=[conversation_id]))
            return "quarantined"
        over = limits_for(settings).turn(str(conversation_id))
        if over is not None:
            # A loop (an auto-responder answering every reply) or a flood: held for an
            # operator, whose release lets the turn run.
            with session.begin():
                hold(session, conversation_id, reason=over.reason, now=clock(), limit=over.limit)
            log.warning("conversation %s held: %s", conversation_id, over.reason)
            publish(waker, Produced.of(changed=[conversation_id]))
            return "limited"
        # Then the reads, in a second transaction of the same session.
        with session.begin():
            snapshot = turn_store.rehydrate(
                session, conversation_id, window=settings.history_window
            )
            if not snapshot.new_messages and not snapshot.opening:
                # The claim raced the previous holder's commit on PostgreSQL (its WHERE was
                # re-checked on the new row, not the new messages): nothing to answer.
                turn_store.release(session, conversation_id, token=token, now=clock())
                return "skipped"
            memory = recall(
                session,
                snapshot.customer_id,
                now=clock(),
                retention=settings.memory_retention_delta,
            )
            # What an earlier attempt of this turn (a crashed worker) finished: replayed.
            recorded = journal_store.load(session, conversation_id, snapshot.turn_number)
    snapshot = turn_store.answering_through(snapshot, answered_through(recorded))
    writer = journal_store.FencedJournal(engine, conversation_id, snapshot.turn_number, token)
    arrivals = MessageArrivals(
        engine,
        writer,
        interrupting=settings.double_texting(snapshot.channel) == "interrupt",
        broker_url=settings.effective_broker_url,
        poll=settings.events_poll_seconds,
        notify=lambda: waker.changed([conversation_id]),
    )
    journal = Journal(
        recorded,
        writer,
        through=snapshot.new_messages[-1].id if snapshot.new_messages else None,
        arrivals=arrivals,
    )

    # No transaction is open from here to the commit: the model may take seconds. Each
    # journal write is a short transaction of its own, fenced on the lease like the commit.
    try:
        outcome = _decide(snapshot, memory, agents, settings, journal)
    except LeaseLost:
        LEASES_LOST.inc()
        log.warning("turn of conversation %s lost its lease mid-run; stopped", conversation_id)
        return "lease_lost"
    except Exception as exc:
        with transaction(engine) as session:
            turn_store.release(session, conversation_id, token=token, now=clock(), error=repr(exc))
        _log_failure(exc, snapshot, agents, attempts=attempts, settings=settings)
        return "failed"

    # Messages the run added mid-turn (double texting) are answered by this turn too.
    snapshot = turn_store.also_answering(snapshot, arrivals.taken.values())
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
        LEASES_LOST.inc()
        log.warning("turn of conversation %s lost its lease; discarded", conversation_id)
        return "lease_lost"
    committed_at = clock()
    if snapshot.new_messages:
        oldest = min(m.created_at for m in snapshot.new_messages)
        REPLY_SECONDS.labels(snapshot.channel).observe(
            max(0.0, (committed_at - oldest).total_seconds())
        )
    log.info(
        "turn %d of conversation %s committed in %.2fs: %d %s, %s",
        snapshot.turn_number,
        conversation_id,
        time.perf_counter() - started,
        len(outcome.replies),
        "reply" if len(outcome.replies) == 1 else "replies",
        result.status,
    )

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
            changed=[conversation_id, result.reopened_conversation_id],
        ),
    )
    return "committed"


def _log_failure(
    exc: Exception,
    snapshot: turn_store.TurnSnapshot,
    agents: AgentCatalog,
    *,
    attempts: int,
    settings: Settings,
) -> None:
    """One line for a model that failed (down, refusing, overloaded): which service, model
    and URL, and what happens next. A model server that is down fails every turn alike, and
    its chained traceback (about 200 lines, every retry) says less than this line. Anything
    else is a bug in an agent or in Dormouse: its traceback is what helps."""
    if attempts < settings.max_turn_attempts:
        then = (
            f"attempt {attempts} of {settings.max_turn_attempts}; "
            f"retried within {settings.redrive_interval:g}s"
        )
    else:
        then = f"attempt {attempts}, the last: the next claim hands it to a person"
    if not isinstance(exc, ModelAPIError):
        log.exception("turn of conversation %s failed (%s)", snapshot.conversation_id, then)
        return
    model = model_name(agents.for_service(snapshot.service)) or "its model"
    log.error(
        "turn of conversation %s failed: service %r, model %s: %s: %s (%s)",
        snapshot.conversation_id,
        snapshot.service,
        model,
        type(exc).__name__,
        exc,
        then,
    )


def _decide(
    snapshot: turn_store.TurnSnapshot,
    memory: list[Memory],
    agents: AgentCatalog,
    settings: Settings,
    journal: Journal,
) -> turn_store.TurnOutcome:
    deps = TurnDeps(
        conversation_id=snapshot.conversation_id,
        customer_id=snapshot.customer_id,
        service=snapshot.service,
        channel=snapshot.channel,
        turn_number=snapshot.turn_number,
        # The same for every retry of this turn (its number only moves on commit).
        idempotency_key=f"{snapshot.conversation_id}:{snapshot.turn_number}",
        customer_name=snapshot.customer_name,
        customer_attributes=dict(snapshot.customer_attributes),
        context=dict(snapshot.context),
    )
    context = TurnContext(
        deps=deps,
        customer_message_count=snapshot.inbound_count,
        history=snapshot.history,
        new_messages=snapshot.new_messages,
        earlier=snapshot.earlier,
        memory=tuple(memory),
        opening=snapshot.opening,
    )
    agent = agents.for_service(snapshot.service)
    channel = get_channel(snapshot.channel, settings)
    limits = TurnLimits(
        model_requests=settings.turn_max_model_requests,
        tool_timeout=settings.tool_timeout,
        deadline=settings.turn_deadline,
    )
    try:
        turn = run_agent_turn(agent, context, limits, journal)
    except TurnOverLimit as exc:
        # Retrying would loop the same way: a person takes it from here, and says so.
        QUARANTINES.labels("model_requests").inc()
        log.error("turn of conversation %s: %s; handed off", snapshot.conversation_id, exc)
        told = settings.quarantine_message
        return turn_store.TurnOutcome(
            replies=[channel.shape(told)] if told.strip() else [],
            handoff_reason=str(exc),
            record=turn_store.TurnRecordData(
                agent=kind_of(agent), tool_calls=_calls(deps), steps=list(journal.steps)
            ),
        )
    effects = deps.effects
    return turn_store.TurnOutcome(
        replies=[channel.shape(r) for r in turn.replies],
        finish_reason=effects.finish_reason,
        handoff_reason=effects.handoff_reason,
        facts=list(effects.facts),
        journaled=journal.has_rows,
        record=turn_store.TurnRecordData(
            agent=kind_of(agent),
            model=turn.model,
            input_tokens=turn.input_tokens,
            output_tokens=turn.output_tokens,
            model_requests=turn.model_requests,
            tool_calls=_calls(deps),
            steps=turn.steps,
        ),
    )


def _calls(deps: TurnDeps) -> list[dict[str, object]]:
    return [call.as_json() for call in deps.effects.tool_calls]
