"""Operator actions on one conversation: finish, handoff, hand back, release, reply, override
timeout."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, Request
from pydantic import Field, field_validator
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import ApiBody, require_api_key, state
from api.timeout_routes import DurationOrDefault, override_from
from conversations import lifecycle
from conversations.channel_names import LONGEST_TEXT
from conversations.db import session_factory, transaction
from conversations.states import FinishReason
from conversations.types import utcnow
from conversations.views import ConversationDetail, conversation_detail
from conversations.wakeup import Produced, publish

router = APIRouter(
    prefix="/v1/conversations", dependencies=[Depends(require_api_key)], tags=["operators"]
)


class FinishIn(ApiBody):
    reason: Literal["api", "operator"] = "api"


class HandoffIn(ApiBody):
    reason: str = Field("operator took over", max_length=500)


class MessageIn(ApiBody):
    text: str = Field(..., min_length=1, max_length=LONGEST_TEXT)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank")
        return value


class PatchIn(ApiBody):
    inactivity: DurationOrDefault = Field(..., description='duration, null (never) or "default"')


T = TypeVar("T")


def _run(engine: Engine, fn: Callable[[Session], T]) -> T:
    """Run one transition in its own transaction (refusals are answered by api/app.py)."""
    with transaction(engine) as session:
        return fn(session)


def _detail(engine: Engine, conversation_id: uuid.UUID) -> ConversationDetail:
    with session_factory(engine)() as session:
        found = conversation_detail(session, conversation_id)
    assert found is not None
    return found


@router.post("/{conversation_id}/finish", response_model=ConversationDetail)
async def finish(
    request: Request, conversation_id: uuid.UUID, body: Annotated[FinishIn | None, Body()] = None
) -> ConversationDetail:
    app = state(request)
    reason = FinishReason((body or FinishIn()).reason)
    done = await run_in_threadpool(
        _run,
        app.engine,
        lambda s: lifecycle.finish(s, conversation_id, reason=reason, now=utcnow()),
    )
    produced = Produced.of(
        wrap_ups=[conversation_id],
        turns=[done.reopened_conversation_id],
        changed=[conversation_id, done.reopened_conversation_id],
    )
    await run_in_threadpool(publish, app.waker, produced)
    return await run_in_threadpool(_detail, app.engine, conversation_id)


@router.post("/{conversation_id}/handoff", response_model=ConversationDetail)
async def handoff(
    request: Request, conversation_id: uuid.UUID, body: Annotated[HandoffIn | None, Body()] = None
) -> ConversationDetail:
    app = state(request)
    reason = (body or HandoffIn()).reason
    await run_in_threadpool(
        _run,
        app.engine,
        lambda s: lifecycle.handoff(s, conversation_id, reason=reason, now=utcnow()),
    )
    await run_in_threadpool(publish, app.waker, Produced.of(changed=[conversation_id]))
    return await run_in_threadpool(_detail, app.engine, conversation_id)


@router.post("/{conversation_id}/handback", response_model=ConversationDetail)
async def handback(request: Request, conversation_id: uuid.UUID) -> ConversationDetail:
    app = state(request)
    defaults = app.settings.default_policies()
    await run_in_threadpool(
        _run,
        app.engine,
        lambda s: lifecycle.handback(s, conversation_id, now=utcnow(), defaults=defaults),
    )
    await run_in_threadpool(publish, app.waker, Produced.of(changed=[conversation_id]))
    return await run_in_threadpool(_detail, app.engine, conversation_id)


@router.post("/{conversation_id}/release", response_model=ConversationDetail)
async def release(request: Request, conversation_id: uuid.UUID) -> ConversationDetail:
    """Let the agent answer a held conversation (mail that failed authentication, a sender or
    conversation over a spending limit): what it holds is answered by the next turn."""
    app = state(request)
    defaults = app.settings.default_policies()
    waiting = await run_in_threadpool(
        _run,
        app.engine,
        lambda s: lifecycle.release(s, conversation_id, now=utcnow(), defaults=defaults),
    )
    produced = Produced.of(turns=[conversation_id] if waiting else [], changed=[conversation_id])
    await run_in_threadpool(publish, app.waker, produced)
    return await run_in_threadpool(_detail, app.engine, conversation_id)


@router.post("/{conversation_id}/messages", status_code=201)
async def operator_message(
    request: Request, conversation_id: uuid.UUID, body: MessageIn
) -> dict[str, object]:
    app = state(request)
    defaults = app.settings.default_policies()
    outbox_id = await run_in_threadpool(
        _run,
        app.engine,
        lambda s: lifecycle.operator_reply(
            s, conversation_id, text=body.text, now=utcnow(), defaults=defaults
        ),
    )
    produced = Produced.of(deliveries=[outbox_id], changed=[conversation_id])
    await run_in_threadpool(publish, app.waker, produced)
    return {"outbox_id": outbox_id, "conversation_id": str(conversation_id), "text": body.text}


@router.patch("/{conversation_id}", response_model=ConversationDetail)
async def patch_conversation(
    request: Request, conversation_id: uuid.UUID, body: PatchIn
) -> ConversationDetail:
    app = state(request)
    defaults = app.settings.default_policies()
    override = override_from(body.inactivity)
    await run_in_threadpool(
        _run,
        app.engine,
        lambda s: lifecycle.set_timeout_override(
            s, conversation_id, override=override, defaults=defaults
        ),
    )
    return await run_in_threadpool(_detail, app.engine, conversation_id)
