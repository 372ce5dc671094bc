"""Read models shown by the API and the CLI (one shape for both)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from conversations.models import Conversation, Message, OutboxRow, TurnRecord
from conversations.states import OPEN_STATUSES, ConversationStatus

# The status filter that means "not finished" (held, handoff, with the agent).
OPEN = "open"


class MessageView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    direction: str
    role: str
    channel: str
    address: str
    body: str
    media: list[str]
    # The provider's id (Twilio MessageSid, email Message-ID) and what the channel recorded
    # with the message (email: subject, attachments, why it was automatic).
    provider_id: str | None
    meta: dict[str, Any]
    inbound_state: str | None
    delivery_status: str | None
    delivery_error: str | None
    turn: int | None
    created_at: datetime
    # Written to the local dev sink (no provider credentials), not sent to anyone.
    via_sink: bool = False


class ConversationSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: str
    finish_reason: str | None
    handoff_reason: str | None
    held_reason: str | None = None  # status held: why no turn runs until it is released
    service: str
    channel: str
    address: str
    customer_id: uuid.UUID
    turn_count: int
    inbound_count: int
    last_error: str | None
    last_activity_at: datetime
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    expires_at: datetime | None
    nudge_due_at: datetime | None
    timeout_override_set: bool
    timeout_override_seconds: int | None
    summary: str | None


class ToolCallView(BaseModel):
    name: str
    arguments: dict[str, Any]
    result: str | None
    error: str | None
    duration_ms: int
    replayed: bool = False  # a retry took the result from the step journal: not run again


class StepView(BaseModel):
    """One step of a turn's journal: a model response (``call`` 0) or the result of the tool
    call in part ``call`` - 1 of the response of model step ``step``."""

    step: int
    call: int
    kind: str  # model | tool
    name: str  # the model that answered, or the tool
    input_tokens: int = 0
    output_tokens: int = 0
    # A retry took it from the journal: the model was not asked again, the tool not run again.
    replayed: bool = False


class TurnView(BaseModel):
    """One committed turn: what ran it, what it cost, which tools it called, its steps."""

    model_config = ConfigDict(from_attributes=True)

    turn_number: int
    agent: str
    model: str | None
    input_tokens: int
    output_tokens: int
    model_requests: int
    tool_calls: list[ToolCallView]
    steps: list[StepView] = Field(default_factory=list)
    created_at: datetime


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    model_requests: int = 0


class ConversationDetail(ConversationSummary):
    messages: list[MessageView]
    turns: list[TurnView] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)  # summed over every turn of the conversation


class OutboxView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    conversation_id: uuid.UUID
    channel: str
    to_address: str
    body: str
    status: str
    attempts: int
    via_sink: bool
    provider_id: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


def list_conversations(
    session: Session,
    *,
    status: ConversationStatus | str | None = None,
    channel: str | None = None,
    service: str | None = None,
    address: str | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[ConversationSummary]:
    """Newest activity first; ``before`` is the (updated_at, id) of the last one already seen.
    ``status`` ``open``: every status but finished."""
    query = (
        select(Conversation)
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(limit)
    )
    if status == OPEN:
        query = query.where(Conversation.status.in_(OPEN_STATUSES))
    elif status is not None:
        query = query.where(Conversation.status == status)
    if channel is not None:
        query = query.where(Conversation.channel == channel)
    if service is not None:
        query = query.where(Conversation.service == service)
    if address is not None:
        query = query.where(Conversation.address == address)
    if before is not None:
        query = query.where(tuple_(Conversation.updated_at, Conversation.id) < before)
    return [ConversationSummary.model_validate(c) for c in session.scalars(query)]


def conversation_detail(
    session: Session, conversation_id: uuid.UUID, *, message_limit: int = 200
) -> ConversationDetail | None:
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        return None
    recent = session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(message_limit)
    ).all()
    turns = session.scalars(
        select(TurnRecord)
        .where(TurnRecord.conversation_id == conversation_id)
        .order_by(TurnRecord.turn_number.desc())
        .limit(message_limit)
    ).all()
    total = session.execute(
        select(
            func.coalesce(func.sum(TurnRecord.input_tokens), 0),
            func.coalesce(func.sum(TurnRecord.output_tokens), 0),
            func.coalesce(func.sum(TurnRecord.model_requests), 0),
        ).where(TurnRecord.conversation_id == conversation_id)
    ).one()
    sunk = set(
        session.scalars(
            select(OutboxRow.message_id).where(
                OutboxRow.conversation_id == conversation_id,
                OutboxRow.via_sink.is_(True),
                OutboxRow.message_id.in_([m.id for m in recent]),
            )
        )
    )
    messages = [
        MessageView.model_validate(m).model_copy(update={"via_sink": m.id in sunk})
        for m in reversed(recent)
    ]
    return ConversationDetail(
        **ConversationSummary.model_validate(conv).model_dump(),
        messages=messages,
        turns=[TurnView.model_validate(t) for t in reversed(turns)],
        usage=Usage(input_tokens=total[0], output_tokens=total[1], model_requests=total[2]),
    )


def list_outbox(
    session: Session,
    *,
    status: str | None = None,
    service: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[OutboxView]:
    """Newest first; ``before`` is the id of the last row already seen."""
    query = select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)
    if status is not None:
        query = query.where(OutboxRow.status == status)
    if service is not None:
        query = query.join(Conversation, Conversation.id == OutboxRow.conversation_id).where(
            Conversation.service == service
        )
    if before is not None:
        query = query.where(OutboxRow.id < before)
    return [OutboxView.model_validate(r) for r in session.scalars(query)]
