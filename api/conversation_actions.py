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
from conversations import actions
from conversations.actions import api_actor
from conversations.channel_names import LONGEST_TEXT
from conversations.db import session_factory
from conversations.states import FinishReason
from conversations.types import utcnow
from conversations.views import ConversationDetail, conversation_detail
from conversations.wakeup import Produced

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
ApiKey = Annotated[str, Depends(require_api_key)]  # the calling key's name, for the audit trail


def _detail(engine: Engine, conversation_id: uuid.UUID) -> ConversationDetail:
    with session_factory(engine)() as session:
        found = conversation_detail(session, conversation_id)
    assert found is not None
    return found


async def _acted(
    request: Request, conversation_id: uuid.UUID, work: Callable[[Session], Produced]
) -> ConversationDetail:
    """Run one action (its transaction, then its wake-ups); the conversation as it now is."""
    app = state(request)
    await run_in_threadpool(
        actions.commit_and_publish, app.engine, app.waker, lambda s: (None, work(s))
    )
    return await run_in_threadpool(_detail, app.engine, conversation_id)


@router.post("/{conversation_id}/finish", response_model=ConversationDetail)
async def finish(
    request: Request,
    conversation_id: uuid.UUID,
    key: ApiKey,
    body: Annotated[FinishIn | None, Body()] = None,
) -> ConversationDetail:
    reason = FinishReason((body or FinishIn()).reason)
    return await _acted(
        request,
        conversation_id,
        lambda s: actions.finish(s, conversation_id, api_actor(key), reason=reason, now=utcnow()),
    )


@router.post("/{conversation_id}/handoff", response_model=ConversationDetail)
async def handoff(
    request: Request,
    conversation_id: uuid.UUID,
    key: ApiKey,
    body: Annotated[HandoffIn | None, Body()] = None,
) -> ConversationDetail:
    reason = (body or HandoffIn()).reason
    return await _acted(
        request,
        conversation_id,
        lambda s: actions.take_over(
            s, conversation_id, api_actor(key), reason=reason, now=utcnow()
        ),
    )


@router.post("/{conversation_id}/handback", response_model=ConversationDetail)
async def handback(request: Request, conversation_id: uuid.UUID, key: ApiKey) -> ConversationDetail:
    defaults = state(request).settings.default_policies()
    return await _acted(
        request,
        conversation_id,
        lambda s: actions.hand_back(
            s, conversation_id, api_actor(key), now=utcnow(), defaults=defaults
        ),
    )


@router.post("/{conversation_id}/release", response_model=ConversationDetail)
async def release(request: Request, conversation_id: uuid.UUID, key: ApiKey) -> ConversationDetail:
    """Let the agent answer a held conversation (mail that failed authentication, a sender or
    conversation over a spending limit): what it holds is answered by the next turn."""
    defaults = state(request).settings.default_policies()
    return await _acted(
        request,
        conversation_id,
        lambda s: actions.release(
            s, conversation_id, api_actor(key), now=utcnow(), defaults=defaults
        ),
    )


@router.post("/{conversation_id}/messages", status_code=201)
async def operator_message(
    request: Request, conversation_id: uuid.UUID, key: ApiKey, body: MessageIn
) -> dict[str, object]:
    defaults = state(request).settings.default_policies()
    app = state(request)
    outbox_id = await run_in_threadpool(
        actions.commit_and_publish,
        app.engine,
        app.waker,
        lambda s: actions.reply(
            s, conversation_id, api_actor(key), text=body.text, now=utcnow(), defaults=defaults
        ),
    )
    return {"outbox_id": outbox_id, "conversation_id": str(conversation_id), "text": body.text}


@router.patch("/{conversation_id}", response_model=ConversationDetail)
async def patch_conversation(
    request: Request, conversation_id: uuid.UUID, key: ApiKey, body: PatchIn
) -> ConversationDetail:
    defaults = state(request).settings.default_policies()
    override = override_from(body.inactivity)
    shown = "never" if body.inactivity is None else str(body.inactivity)
    return await _acted(
        request,
        conversation_id,
        lambda s: actions.set_timeout(
            s,
            conversation_id,
            api_actor(key),
            override=override,
            shown=shown,
            now=utcnow(),
            defaults=defaults,
        ),
    )
