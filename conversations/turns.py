"""The turn's transitions on the conversation row: claim, rehydrate, commit, release.

A turn holds a lease with a fencing token. Every write a turn makes is conditional on that
token, so a worker that paused past its lease (a zombie) cannot commit over its successor.
No transaction is held between claim and commit: the agent runs with none open.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session

from conversations.errors import LeaseLost
from conversations.lifecycle import reopen_pending, settle_pending
from conversations.models import PENDING_MESSAGE, Conversation, Customer, MemoryEntry, Message
from conversations.replies import enqueue_reply
from conversations.states import (
    ConversationStatus,
    FinishReason,
    InboundState,
    Role,
)
from conversations.timeout_store import deadline_values, load_policies
from conversations.timeouts import Policy

# A burst larger than this is answered over several turns, oldest first.
MAX_MESSAGES_PER_TURN = 50
EARLIER_MESSAGES = 4


@dataclass(frozen=True, slots=True)
class MessageView:
    id: int
    direction: str
    role: str
    channel: str
    body: str
    created_at: datetime


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


@dataclass(frozen=True, slots=True)
class CommitResult:
    outbox_ids: tuple[int, ...]
    status: ConversationStatus
    # Messages that arrived during a turn that finished the conversation open a new one.
    reopened_conversation_id: uuid.UUID | None = None
    # Messages arrived during the turn and wait for the next one (checked under the row lock
    # this commit holds, so a concurrent ingest is either seen here or wakes after us).
    more_pending: bool = False


def _has_work():  # type: ignore[no-untyped-def]
    return or_(
        Conversation.wants_turn.is_(True),
        exists().where(
            Message.conversation_id == Conversation.id,
            PENDING_MESSAGE,
        ),
    )


def has_pending(session: Session, conversation_id: uuid.UUID) -> bool:
    """Whether the conversation has work a turn would claim."""
    return bool(
        session.scalar(
            select(Conversation.id).where(Conversation.id == conversation_id, _has_work())
        )
    )


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
    attempts = session.scalar(
        update(Conversation)
        .where(
            Conversation.id == conversation_id,
            _has_work(),
            or_(
                Conversation.status == ConversationStatus.SUSPENDED,
                and_(
                    Conversation.status == ConversationStatus.RUNNING,
                    Conversation.lease_expires_at < now,
                ),
            ),
        )
        .values(
            status=ConversationStatus.RUNNING,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            claim_attempts=Conversation.claim_attempts + 1,
            updated_at=now,
        )
        .returning(Conversation.claim_attempts)
        .execution_options(synchronize_session=False)
    )
    return attempts


def rehydrate(session: Session, conversation_id: uuid.UUID, *, window: int) -> TurnSnapshot:
    conv = session.get_one(Conversation, conversation_id)
    new = session.scalars(
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            PENDING_MESSAGE,
        )
        .order_by(Message.id)
        .limit(MAX_MESSAGES_PER_TURN)
    ).all()
    first_new = new[0].id if new else None
    # Automatic mail (auto-replies, bounces) is recorded for people, never shown to the agent.
    history_query = select(Message).where(
        Message.conversation_id == conversation_id, Message.role != Role.SYSTEM
    )
    if first_new is not None:
        history_query = history_query.where(Message.id < first_new)
    history = session.scalars(history_query.order_by(Message.id.desc()).limit(window)).all()
    earlier: list[Message] = []
    if len(history) == window:
        # A long conversation: its opening stands in for the part outside the window.
        earlier = list(
            session.scalars(
                select(Message)
                .where(
                    Message.conversation_id == conversation_id,
                    Message.id < history[-1].id,
                    Message.role != Role.SYSTEM,
                )
                .order_by(Message.id)
                .limit(EARLIER_MESSAGES)
            )
        )
    customer = session.get_one(Customer, conv.customer_id)
    return TurnSnapshot(
        conversation_id=conv.id,
        customer_id=conv.customer_id,
        service=conv.service,
        channel=conv.channel,
        address=conv.address,
        turn_number=conv.turn_count + 1,
        inbound_count=conv.inbound_count,
        new_messages=tuple(_view(m) for m in new),
        history=tuple(_view(m) for m in reversed(history)),
        earlier=tuple(_view(m) for m in earlier),
        customer_name=customer.name,
        customer_attributes=dict(customer.attributes or {}),
        context=dict(conv.context or {}),
        opening=conv.wants_turn and not new,
        timeout_override_set=conv.timeout_override_set,
        timeout_override_seconds=conv.timeout_override_seconds,
    )


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
        update(Conversation)
        .where(
            Conversation.id == snapshot.conversation_id,
            Conversation.lease_token == token,
            Conversation.status == ConversationStatus.RUNNING,
        )
        .values(
            status=status,
            lease_token=None,
            lease_expires_at=None,
            claim_attempts=0,
            turn_count=Conversation.turn_count + 1,
            last_error=None,
            last_activity_at=now,
            updated_at=now,
            finish_reason=outcome.finish_reason,
            finished_at=now if finishing else None,
            handoff_reason=outcome.handoff_reason,
            wants_turn=False,
            **deadline,
        )
        .execution_options(synchronize_session=False)
    )
    if fenced.rowcount != 1:
        raise LeaseLost(f"lease on conversation {snapshot.conversation_id} was taken over")

    handled = [m.id for m in snapshot.new_messages]
    if handled:
        session.execute(
            update(Message)
            .where(Message.id.in_(handled), PENDING_MESSAGE)
            .values(inbound_state=InboundState.DONE, turn=snapshot.turn_number)
            .execution_options(synchronize_session=False)
        )

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

    for fact in outcome.facts:
        session.add(
            MemoryEntry(
                customer_id=snapshot.customer_id,
                conversation_id=snapshot.conversation_id,
                kind="fact",
                text=fact[:1000],
                created_at=now,
            )
        )

    if status == ConversationStatus.HANDOFF:
        # Arrived during this turn: for the human now, like lifecycle.handoff does.
        settle_pending(session, snapshot.conversation_id, InboundState.HELD)

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
    return result.rowcount == 1


def quarantine(
    session: Session, conversation_id: uuid.UUID, *, token: uuid.UUID, attempts: int, now: datetime
) -> bool:
    """Stop retrying a turn that keeps failing (a poison message): hand it to a human.

    The broker has no delivery counter, so the count lives on the row (``claim_attempts``).
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
    if result.rowcount != 1:
        return False
    settle_pending(session, conversation_id, InboundState.QUARANTINED)
    return True


def _view(m: Message) -> MessageView:
    return MessageView(m.id, m.direction, m.role, m.channel, m.body, m.created_at)
