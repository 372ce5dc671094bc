"""Operator routes under /v1: conversations and the outbox (dev sink included)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import require_api_key, state
from api.pages import DESCRIPTION, PAGE_HEADERS, decode, decode_id, page
from conversations.addresses import normalize_any
from conversations.channel_names import ChannelName
from conversations.db import session_factory
from conversations.errors import ConversationNotFound, InvalidInput
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


@router.get(
    "/conversations",
    response_model=list[ConversationSummary],
    responses={200: {"headers": PAGE_HEADERS}},
)
async def get_conversations(
    request: Request,
    response: Response,
    status: Annotated[
        ConversationStatus | Literal["open"] | None,
        Query(description="a status, or `open`: every status but finished"),
    ] = None,
    channel: ChannelName | None = None,
    service: Annotated[str | None, Query(max_length=64)] = None,
    address: Annotated[str | None, Query(max_length=320)] = None,
    cursor: Annotated[str | None, Query(max_length=200, description=DESCRIPTION)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ConversationSummary]:
    """Conversations, newest activity first, a page at a time (``X-Next-Cursor``).

    A conversation that changes while you page moves to the top: it is on a page you have
    already read, not repeated on the next one.
    """
    app = state(request)
    if address is not None:
        address = normalize_any(address, app.settings.default_region)
    before = None
    if cursor is not None:
        at, after_id = decode(cursor, 2)
        try:
            before = (datetime.fromisoformat(at), uuid.UUID(after_id))
        except ValueError:
            raise InvalidInput("cursor: not a cursor this list answered") from None

    def read() -> list[ConversationSummary]:
        with session_factory(app.engine)() as session:
            return list_conversations(
                session,
                status=status,
                channel=channel,
                service=service,
                address=address,
                before=before,
                limit=limit + 1,
            )

    found = await run_in_threadpool(read)
    return page(found, limit, lambda c: (c.updated_at.isoformat(), c.id), request, response)


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


@router.get("/outbox", response_model=list[OutboxView], responses={200: {"headers": PAGE_HEADERS}})
async def get_outbox(
    request: Request,
    response: Response,
    status: OutboxStatus | None = None,
    service: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=200, description=DESCRIPTION)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[OutboxView]:
    """Outgoing messages, newest first, a page at a time (``X-Next-Cursor``)."""
    app = state(request)
    before = decode_id(cursor) if cursor is not None else None

    def read() -> list[OutboxView]:
        with session_factory(app.engine)() as session:
            return list_outbox(
                session, status=status, service=service, before=before, limit=limit + 1
            )

    found = await run_in_threadpool(read)
    return page(found, limit, lambda row: (row.id,), request, response)
