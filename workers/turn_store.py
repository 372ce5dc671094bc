"""The turn's transitions on the conversation row: claim, rehydrate, commit, release.

A turn holds a lease with a fencing token. Every write a turn makes is conditional on that
token, so a worker that paused past its lease (a zombie) cannot commit over its successor.
No transaction is held between claim and commit: the agent runs with none open.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, update
from sqlalchemy.orm import Session

from agent import journal_store
from conversations import events
from conversations.db import rowcount
from conversations.errors import LeaseLost
from conversations.lifecycle import reopen_pending, settle_pending
from conversations.models import Conversation, TurnRecord
from conversations.outbox import enqueue_reply
from conversations.states import (
    ConversationStatus,
    FinishReason,
    InboundState,
    Role,
)
from conversations.timeout_store import deadline_values, load_policies
from conversations.timeouts import Policy
from conversations.transcript import MessageView
from memory.store import MemoryKind, remember
from workers import turn_statements as sql

# A burst larger than this is answered over several turns, oldest first.
MAX_MESSAGES_PER_TURN = 50
EARLIER_MESSAGES = 4


@dataclass(frozen=True, slots=True)
class TurnSnapshot:
    """Everything a turn reads, taken in one short read; bounded whatever the history length."""

    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    service: str
    channel: str
    address: str
    turn_number: int
    inbound_count: int
    new_messages: tuple[MessageView, ...]
    history: tuple[MessageView, ...]
    earlier: tuple[MessageView, ...] = ()  # the opening of a long conversation, outside history
    customer_name: str | None = None
    customer_attributes: dict[str, object] = field(default_factory=dict)
    context: dict[str, object] = field(default_factory=dict)
    opening: bool = False  # an outbound conversation whose first message the agent writes
    timeout_override_set: bool = False
    timeout_override_seconds: int | None = None


@dataclass(slots=True)
class TurnOutcome:
    """What the agent decided. Applied only by ``commit_turn``, atomically, under the lease."""

    replies: list[str] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    handoff_reason: str | None = None
    facts: list[str] = field(default_factory=list)
    record: TurnRecordData | None = None
    journaled: bool = True  # whether the step journal holds rows of this turn to prune


@dataclass(frozen=True, slots=True)
class TurnRecordData:
    """What the turn ran and what it cost, kept on the conversation (``turn_records``)."""

    agent: str
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    model_requests: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)  # the step journal, folded in


@dataclass(frozen=True, slots=True)
class CommitResult:
    outbox_ids: tuple[int, ...]
    status: ConversationStatus
    # Messages that arrived during a turn that finished the conversation open a new one.
    reopened_conversation_id: uuid.UUID | None = None
    # Messages arrived during the turn and wait for the next one (checked under the row lock
    # this commit holds, so a concurrent ingest is either seen here or wakes after us).
    more_pending: bool = False


def has_pending(session: Session, conversation_id: uuid.UUID) -> bool:
    """Whether the conversation has work a turn would claim."""
    return session.scalar(sql.HAS_PENDING, {"conversation_id": conversation_id}) is not None


def claim(
    session: Session,
    conversation_id: uuid.UUID,
    *,
    token: uuid.UUID,
    now: datetime,
    lease_seconds: int,
) -> int | None:
    """Take the lease if there is work and nobody holds a live lease.

    Returns the claim attempt count (deliveries of this turn so far), or None if not claimed.
    """
    attempts: int | None = session.scalar(
        sql.CLAIM,
        {
            "conversation_id": conversation_id,
            "token": token,
            "now": now,
            "lease_until": now + timedelta(seconds=lease_seconds),
        },
    )
    return attempts


def rehydrate(session: Session, conversation_id: uuid.UUID, *, window: int) -> TurnSnapshot:
    conv = session.execute(sql.CONVERSATION_FOR_TURN, {"conversation_id": conversation_id}).one()
    of_this = {"conversation_id": conversation_id}
    new = session.execute(sql.PENDING_BATCH, {**of_this, "limit": MAX_MESSAGES_PER_TURN}).all()
    history = session.execute(sql.HISTORY_SETTLED, {**of_this, "limit": window}).all()
    earlier: Sequence[Row[*tuple[Any, ...]]] = ()
    if len(history) == window:
        # A long conversation: its opening stands in for the part outside the window.
        earlier = session.execute(
            sql.OPENING_BEFORE, {**of_this, "limit": EARLIER_MESSAGES, "before": history[-1].id}
        ).all()
    return TurnSnapshot(
        conversation_id=conv.id,
        customer_id=conv.customer_id,
        service=conv.service,
        channel=conv.channel,
        address=conv.address,
        turn_number=conv.turn_count + 1,
        inbound_count=conv.inbound_count,
        new_messages=tuple(MessageView(*m) for m in new),
        history=tuple(MessageView(*m) for m in reversed(history)),
        earlier=tuple(MessageView(*m) for m in earlier),
        customer_name=conv.customer_name,
        customer_attributes=dict(conv.customer_attributes or {}),
        context=dict(conv.context or {}),
        opening=conv.wants_turn and not new,
        timeout_override_set=conv.timeout_override_set,
        timeout_override_seconds=conv.timeout_override_seconds,
    )


def answering_through(snapshot: TurnSnapshot, through: int | None) -> TurnSnapshot:
    """The snapshot with only the new messages up to ``through``: a retried turn answers what
    its journaled attempt answered; a message that arrived since waits for the next turn."""
    if through is None:
        return snapshot
    kept = tuple(m for m in snapshot.new_messages if m.id <= through)
    return replace(snapshot, new_messages=kept) if kept else snapshot


def also_answering(snapshot: TurnSnapshot, added: Iterable[MessageView]) -> TurnSnapshot:
    """The snapshot with the messages a run added mid-turn among those it answers."""
    known = {m.id for m in snapshot.new_messages}
    more = tuple(m for m in added if m.id not in known)
    if not more:
        return snapshot
    ordered = sorted((*snapshot.new_messages, *more), key=lambda m: m.id)
    return replace(snapshot, new_messages=tuple(ordered))


def commit_turn(
    session: Session,
    snapshot: TurnSnapshot,
    outcome: TurnOutcome,
    *,
    token: uuid.UUID,
    now: datetime,
    defaults: Mapping[str, Policy],
) -> CommitResult:
    """Write the turn and release the lease in one transaction, or raise ``LeaseLost``."""
    status = ConversationStatus.SUSPENDED
    if outcome.finish_reason is not None:
        status = ConversationStatus.FINISHED
    elif outcome.handoff_reason is not None:
        status = ConversationStatus.HANDOFF
    finishing = status == ConversationStatus.FINISHED
    deadline = deadline_values(
        snapshot,
        status=status,
        last_activity=now,
        policies=load_policies(session),
        defaults=defaults,
    )
    # The fencing update comes first: it takes the row lock, so nothing below can interleave
    # with a successor that re-claimed after our lease expired.
    fenced = session.execute(
        sql.COMMIT_TURN,
        {
            "conversation_id": snapshot.conversation_id,
            "token": token,
            "status": status,
            "last_activity_at": now,
            "updated_at": now,
            "finish_reason": outcome.finish_reason,
            "finished_at": now if finishing else None,
            "handoff_reason": outcome.handoff_reason,
            **deadline,
        },
    )
    if rowcount(fenced) != 1:
        raise LeaseLost(f"lease on conversation {snapshot.conversation_id} was taken over")

    handled = [m.id for m in snapshot.new_messages]
    if handled:
        session.execute(sql.MARK_HANDLED, {"ids": handled, "turn": snapshot.turn_number})

    outbox_ids = tuple(
        enqueue_reply(
            session,
            conversation_id=snapshot.conversation_id,
            channel=snapshot.channel,
            to=snapshot.address,
            text=text,
            role=Role.AGENT,
            turn=snapshot.turn_number,
            now=now,
        )
        for text in outcome.replies
        if text.strip()
    )

    if outcome.record is not None:
        record = outcome.record
        session.add(
            TurnRecord(
                conversation_id=snapshot.conversation_id,
                turn_number=snapshot.turn_number,
                agent=record.agent[:64],
                model=record.model[:200] if record.model else None,
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                model_requests=record.model_requests,
                tool_calls=record.tool_calls,
                steps=record.steps,
                created_at=now,
            )
        )
    # The journal is folded into the record: nothing of it outlives the commit.
    if outcome.journaled:
        journal_store.prune(session, snapshot.conversation_id)

    for fact in outcome.facts:
        remember(
            session,
            customer_id=snapshot.customer_id,
            conversation_id=snapshot.conversation_id,
            kind=MemoryKind.FACT,
            text=fact,
            now=now,
        )

    if status == ConversationStatus.HANDOFF:
        # Arrived during this turn: for the human now, like lifecycle.handoff does.
        settle_pending(session, snapshot.conversation_id, InboundState.HELD)

    # After the replies' own events: a stream shows the replies, then that the turn is done.
    events.record(
        session,
        snapshot.conversation_id,
        events.TURN_COMPLETED,
        now,
        turn=snapshot.turn_number,
        handled=handled,
        status=status,
    )
    if finishing:
        events.record(
            session, snapshot.conversation_id, events.ENDED, now, reason=outcome.finish_reason
        )
    elif status == ConversationStatus.HANDOFF:
        events.record(
            session, snapshot.conversation_id, events.HANDOFF, now, reason=outcome.handoff_reason
        )

    reopened = None
    more_pending = False
    if finishing:
        reopened = reopen_pending(
            session, session.get_one(Conversation, snapshot.conversation_id), now
        )
    elif status == ConversationStatus.SUSPENDED:
        more_pending = has_pending(session, snapshot.conversation_id)
    return CommitResult(outbox_ids, status, reopened, more_pending)


def release(
    session: Session,
    conversation_id: uuid.UUID,
    *,
    token: uuid.UUID,
    now: datetime,
    error: str | None = None,
) -> bool:
    """Give the lease back without writing a turn.

    With ``error`` the attempt counts (the redrive sweep retries it, up to quarantine);
    without, the claim found no work (it raced a commit) and the attempt is handed back.
    """
    values: dict[str, object] = (
        {"last_error": error[:2000]}
        if error
        else {"claim_attempts": Conversation.claim_attempts - 1}
    )
    result = session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.lease_token == token)
        .values(
            status=ConversationStatus.SUSPENDED,
            lease_token=None,
            lease_expires_at=None,
            updated_at=now,
            **values,
        )
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def quarantine(
    session: Session,
    conversation_id: uuid.UUID,
    *,
    token: uuid.UUID,
    attempts: int,
    now: datetime,
    message: str = "",
) -> tuple[int, ...] | None:
    """Stop retrying a turn that keeps failing (a poison message): hand it to a human, and
    tell the customer ``message`` (if any) through the outbox. None if the lease was lost;
    else the outbox ids to deliver.

    The broker has no delivery counter, so the count lives on the row (``claim_attempts``).
    Quarantine happens once (the row leaves ``running`` under our token), so does the message.
    """
    result = session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.lease_token == token)
        .values(
            status=ConversationStatus.HANDOFF,
            handoff_reason=f"turn failed {attempts - 1} times; quarantined for an operator",
            lease_token=None,
            lease_expires_at=None,
            claim_attempts=0,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        return None
    journal_store.prune(session, conversation_id)  # no retry will replay it
    settle_pending(session, conversation_id, InboundState.QUARANTINED)
    events.record(
        session,
        conversation_id,
        events.HANDOFF,
        now,
        reason=f"turn failed {attempts - 1} times; quarantined for an operator",
        quarantined=True,
    )
    if not message.strip():
        return ()
    conversation = session.get_one(Conversation, conversation_id)
    outbox_id = enqueue_reply(
        session,
        conversation_id=conversation_id,
        channel=conversation.channel,
        to=conversation.address,
        text=message,
        role=Role.AGENT,
        turn=None,
        now=now,
    )
    return (outbox_id,)
