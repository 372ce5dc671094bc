"""What a person does to one conversation, from the console or ``/v1``: the lifecycle
transition, its row in the audit trail (``operator_actions``) and what it produced, in the
caller's transaction. The console and the API each parse their own input and call these;
``commit_and_publish`` commits and then hands what was produced to the broker.

``actor`` is who did it as the audit trail shows it: ``operator:<name>`` (the console) or
``api:<key name>`` (``/v1``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from conversations import lifecycle
from conversations.db import transaction
from conversations.models import OutboxRow
from conversations.operators import record_action
from conversations.states import FinishReason
from conversations.timeouts import Policy
from conversations.wakeup import Produced, Waker, publish

T = TypeVar("T")


def api_actor(key_name: str) -> str:
    """How a ``/v1`` caller appears in the audit trail beside operators."""
    return f"api:{key_name}"


def commit_and_publish(
    engine: Engine, waker: Waker, work: Callable[[Session], tuple[T, Produced]]
) -> T:
    """Run ``work`` in one transaction, then publish what it produced (only once committed:
    a wake-up for a change that rolled back would find nothing, or the wrong thing)."""
    with transaction(engine) as session:
        result, produced = work(session)
    publish(waker, produced)
    return result


def take_over(
    session: Session, conversation_id: uuid.UUID, actor: str, *, reason: str, now: datetime
) -> Produced:
    lifecycle.handoff(session, conversation_id, reason=reason, now=now)
    record_action(session, actor, "take_over", now=now, conversation_id=conversation_id)
    return Produced.of(changed=[conversation_id])


def reply(
    session: Session,
    conversation_id: uuid.UUID,
    actor: str,
    *,
    text: str,
    now: datetime,
    defaults: Mapping[str, Policy],
) -> tuple[int, Produced]:
    """Queue a person's reply; its outbox id."""
    outbox_id = lifecycle.operator_reply(
        session, conversation_id, text=text, now=now, defaults=defaults
    )
    message_id = session.scalar(select(OutboxRow.message_id).where(OutboxRow.id == outbox_id))
    record_action(
        session, actor, "reply", now=now, conversation_id=conversation_id, message_id=message_id
    )
    return outbox_id, Produced.of(deliveries=[outbox_id], changed=[conversation_id])


def hand_back(
    session: Session,
    conversation_id: uuid.UUID,
    actor: str,
    *,
    now: datetime,
    defaults: Mapping[str, Policy],
) -> Produced:
    lifecycle.handback(session, conversation_id, now=now, defaults=defaults)
    record_action(session, actor, "hand_back", now=now, conversation_id=conversation_id)
    return Produced.of(changed=[conversation_id])


def release(
    session: Session,
    conversation_id: uuid.UUID,
    actor: str,
    *,
    now: datetime,
    defaults: Mapping[str, Policy],
) -> Produced:
    """Let the agent answer what a held conversation holds."""
    waiting = lifecycle.release(session, conversation_id, now=now, defaults=defaults)
    record_action(session, actor, "release", now=now, conversation_id=conversation_id)
    return Produced.of(turns=[conversation_id] if waiting else [], changed=[conversation_id])


def finish(
    session: Session,
    conversation_id: uuid.UUID,
    actor: str,
    *,
    reason: FinishReason,
    now: datetime,
) -> Produced:
    done = lifecycle.finish(session, conversation_id, reason=reason, now=now)
    record_action(session, actor, "finish", now=now, conversation_id=conversation_id)
    return Produced.of(
        wrap_ups=[conversation_id],
        turns=[done.reopened_conversation_id],
        changed=[conversation_id, done.reopened_conversation_id],
    )


def set_timeout(
    session: Session,
    conversation_id: uuid.UUID,
    actor: str,
    *,
    override: tuple[bool, int | None],
    shown: str,
    now: datetime,
    defaults: Mapping[str, Policy],
) -> Produced:
    """Give this conversation a timeout of its own (``shown``: as the person wrote it)."""
    lifecycle.set_timeout_override(session, conversation_id, override=override, defaults=defaults)
    record_action(
        session, actor, "set_timeout", now=now, conversation_id=conversation_id, inactivity=shown
    )
    return Produced.of(changed=[conversation_id])
