"""Operator routes under /v1: conversations and the outbox (dev sink included)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from api.deps import require_api_key, state
from conversations.addresses import normalize_any
from conversations.channel_names import ChannelName
from conversations.db import session_factory
from conversations.errors import ConversationNotFound
from conversations.states import ConversationStatus, OutboxStatus
from conversations.views import (
    ConversationDetail,
    ConversationSummary,
    OutboxView,
    conversation_detail,
    list_conversations,
    list_outbox,
)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["operators"])


@router.get("/conversations", response_model=list[ConversationSummary])
async def get_conversations(
    request: Request,
    status: ConversationStatus | None = None,
    channel: ChannelName | None = None,
    address: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ConversationSummary]:
    app = state(request)
    if address is not None:
        address = normalize_any(address, app.settings.default_region)

    def read() -> list[ConversationSummary]:
        with session_factory(app.engine)() as session:
            return list_conversations(
                session, status=status, channel=channel, address=address, limit=limit
            )

    return await run_in_threadpool(read)


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail)
async def get_conversation(request: Request, conversation_id: uuid.UUID) -> ConversationDetail:
    app = state(request)

    def read() -> ConversationDetail | None:
        with session_factory(app.engine)() as session:
            return conversation_detail(session, conversation_id)

    found = await run_in_threadpool(read)
    if found is None:
        raise ConversationNotFound(f"no conversation {conversation_id}")
    return found


@router.get("/outbox", response_model=list[OutboxView])
async def get_outbox(
    request: Request,
    status: OutboxStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[OutboxView]:
    app = state(request)

    def read() -> list[OutboxView]:
        with session_factory(app.engine)() as session:
            return list_outbox(session, status=status, limit=limit)

    return await run_in_threadpool(read)
