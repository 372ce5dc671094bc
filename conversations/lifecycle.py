"""Lifecycle transitions outside a turn: finish, handoff, hand back, operator replies.

Every transition is a conditional update on the status it starts from, so two callers at
once (two operators, an operator and the sweep) cannot both apply it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from conversations import events
from conversations.channel_names import check_text
from conversations.db import rowcount
from conversations.errors import ConversationNotFound, TransitionRefused
from conversations.models import OPEN_CONVERSATION, PENDING_MESSAGE, Conversation, Message
from conversations.outbox import enqueue_reply
from conversations.states import ConversationStatus, FinishReason, InboundState, Role
from conversations.timeout_store import refresh_deadline
from conversations.timeouts import Policy


@dataclass(frozen=True, slots=True)
class Finished:
    conversation_id: uuid.UUID
    reopened_conversation_id: uuid.UUID | None


# What a conversation the agent no longer answers drops: a running turn's lease (fencing it
# out) and its inactivity deadlines (the timer pauses until it is handed back or released).
_NOBODY_ANSWERS = {
    "lease_token": None,
    "lease_expires_at": None,
    "expires_at": None,
    "nudge_due_at": None,
}


def _current(session: Session, conversation_id: uuid.UUID) -> Conversation:
    conv = session.get(Conversation, conversation_id, with_for_update=True, populate_existing=True)
    if conv is None:
        raise ConversationNotFound(f"no conversation {conversation_id}")
    return conv


def finish(
    session: Session,
    conversation_id: uuid.UUID,
    *,
    reason: FinishReason,
    now: datetime,
    answer_pending: bool = True,
) -> Finished:
    """End an open conversation. A turn running on it can no longer commit (fenced).

    Messages still waiting for a turn open a new conversation, unless ``answer_pending`` is
    False (the customer opted out: nothing more is sent to them).
    """
    conv = _current(session, conversation_id)
    if conv.status == ConversationStatus.FINISHED:
        raise TransitionRefused(conv.status, f"conversation {conversation_id} is already finished")
    session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, OPEN_CONVERSATION)
        .values(
            status=ConversationStatus.FINISHED,
            finish_reason=reason,
            finished_at=now,
            updated_at=now,
            lease_token=None,
            lease_expires_at=None,
            expires_at=None,
            nudge_due_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    events.record(session, conversation_id, events.ENDED, now, reason=reason)
    if not answer_pending:
        settle_pending(session, conversation_id, InboundState.DONE)
        return Finished(conversation_id, None)
    return Finished(conversation_id, reopen_pending(session, conv, now))


def settle_pending(session: Session, conversation_id: uuid.UUID, state: InboundState) -> None:
    """Take a conversation's waiting messages out of the agent's queue (done, held, …)."""
    session.execute(
        update(Message)
        .where(
            Message.conversation_id == conversation_id,
            PENDING_MESSAGE,
        )
        .values(inbound_state=state)
        .execution_options(synchronize_session=False)
    )


def reopen_pending(session: Session, conv: Conversation, now: datetime) -> uuid.UUID | None:
    """Move messages still waiting for a turn on a now-finished conversation into a new one.

    "A message after a conversation finished opens a new one": these arrived while it was
    finishing, so they get the same treatment instead of being stranded.
    """
    pending = session.scalars(
        select(Message.id).where(Message.conversation_id == conv.id, PENDING_MESSAGE)
    ).all()
    if not pending:
        return None
    fresh = Conversation(
        customer_id=conv.customer_id,
        service=conv.service,
        channel=conv.channel,
        address=conv.address,
        status=ConversationStatus.SUSPENDED,
        inbound_count=len(pending),
        last_activity_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(fresh)
    session.flush()
    events.record(session, fresh.id, events.STARTED, now, channel=fresh.channel)
    session.execute(
        update(Message)
        .where(Message.id.in_(pending))
        .values(conversation_id=fresh.id)
        .execution_options(synchronize_session=False)
    )
    return fresh.id


def handoff(session: Session, conversation_id: uuid.UUID, *, reason: str, now: datetime) -> None:
    """A human takes over: the agent goes silent and the inactivity timer pauses."""
    conv = _current(session, conversation_id)
    # A held conversation may be taken over too: a person answers what the agent may not.
    takes = (ConversationStatus.SUSPENDED, ConversationStatus.RUNNING, ConversationStatus.HELD)
    if conv.status not in takes:
        raise TransitionRefused(conv.status, f"conversation {conversation_id} is {conv.status}")
    session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(
            status=ConversationStatus.HANDOFF,
            handoff_reason=reason,
            held_reason=None,
            updated_at=now,
            **_NOBODY_ANSWERS,
        )
        .execution_options(synchronize_session=False)
    )
    # What the customer wrote is for the human now: shown, not answered by the agent.
    settle_pending(session, conversation_id, InboundState.HELD)
    events.record(session, conversation_id, events.HANDOFF, now, reason=reason)


def hold(
    session: Session,
    conversation_id: uuid.UUID,
    *,
    reason: str,
    now: datetime,
    limit: str | None = None,
) -> bool:
    """Stop the agent answering until an operator releases the conversation: what arrives is
    stored and shown, no turn runs and nothing is sent. A turn running now is fenced out (its
    lease is cleared). ``limit`` names the LIMIT_* setting that was hit, if one was.

    False when there was nothing to hold: a person holds it (handoff) or it is held already.
    """
    held = rowcount(
        session.execute(
            update(Conversation)
            .where(
                Conversation.id == conversation_id,
                Conversation.status.in_((ConversationStatus.SUSPENDED, ConversationStatus.RUNNING)),
            )
            .values(
                status=ConversationStatus.HELD,
                held_reason=reason,
                updated_at=now,
                **_NOBODY_ANSWERS,
            )
            .execution_options(synchronize_session=False)
        )
    )
    settle_pending(session, conversation_id, InboundState.HELD)
    if not held:
        return False
    if limit is None:
        events.record(session, conversation_id, events.HELD, now, reason=reason)
    else:
        events.record(session, conversation_id, events.LIMITED, now, reason=reason, limit=limit)
    return True


def release(
    session: Session, conversation_id: uuid.UUID, *, now: datetime, defaults: Mapping[str, Policy]
) -> bool:
    """An operator lets the agent answer a held conversation: what it holds becomes pending
    again and the inactivity timer restarts. True if there is something for a turn."""
    conv = _current(session, conversation_id)
    if conv.status != ConversationStatus.HELD:
        raise TransitionRefused(conv.status, f"conversation {conversation_id} is not held")
    conv.status = ConversationStatus.SUSPENDED
    conv.held_reason = None
    conv.claim_attempts = 0
    conv.last_activity_at = conv.updated_at = now
    session.flush()
    waiting = rowcount(
        session.execute(
            update(Message)
            .where(
                Message.conversation_id == conversation_id,
                Message.inbound_state == InboundState.HELD,
            )
            .values(inbound_state=InboundState.PENDING)
            .execution_options(synchronize_session=False)
        )
    )
    refresh_deadline(session, conversation_id, defaults=defaults)
    events.record(session, conversation_id, events.RELEASED, now)
    return bool(waiting)


def handback(
    session: Session, conversation_id: uuid.UUID, *, now: datetime, defaults: Mapping[str, Policy]
) -> None:
    """The agent takes over again; the inactivity timer restarts from now."""
    conv = _current(session, conversation_id)
    if conv.status != ConversationStatus.HANDOFF:
        raise TransitionRefused(conv.status, f"conversation {conversation_id} is not in handoff")
    conv.status = ConversationStatus.SUSPENDED
    conv.handoff_reason = None
    conv.last_activity_at = conv.updated_at = now
    session.flush()
    refresh_deadline(session, conversation_id, defaults=defaults)
    events.record(session, conversation_id, events.HANDBACK, now)


def operator_reply(
    session: Session,
    conversation_id: uuid.UUID,
    *,
    text: str,
    now: datetime,
    defaults: Mapping[str, Policy],
) -> int:
    """A human's message, sent on the conversation's channel through the outbox."""
    conv = _current(session, conversation_id)
    if conv.status == ConversationStatus.FINISHED:
        raise TransitionRefused(conv.status, f"conversation {conversation_id} is finished")
    check_text(conv.channel, text, "text")
    outbox_id = enqueue_reply(
        session,
        conversation_id=conv.id,
        channel=conv.channel,
        to=conv.address,
        text=text,
        role=Role.OPERATOR,
        turn=None,
        now=now,
    )
    conv.last_activity_at = conv.updated_at = now
    session.flush()
    refresh_deadline(session, conversation_id, defaults=defaults)
    return outbox_id


def set_timeout_override(
    session: Session,
    conversation_id: uuid.UUID,
    *,
    override: tuple[bool, int | None],
    defaults: Mapping[str, Policy],
) -> None:
    """(set, seconds): (True, None) = never, (False, _) = back to the policies."""
    conv = _current(session, conversation_id)
    if conv.status == ConversationStatus.FINISHED:
        raise TransitionRefused(conv.status, f"conversation {conversation_id} is finished")
    conv.timeout_override_set, conv.timeout_override_seconds = override
    session.flush()
    refresh_deadline(session, conversation_id, defaults=defaults)
