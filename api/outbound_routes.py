"""POST /v1/conversations: the business starts a conversation."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import ApiBody, require_api_key, state
from api.idempotency import Answer, run_once
from api.problems import refusals
from conversations.channel_names import LONGEST_TEXT, ChannelName
from conversations.outbound import start_outbound
from conversations.types import utcnow
from conversations.views import conversation_detail
from conversations.wakeup import Produced, publish

router = APIRouter(prefix="/v1", tags=["outbound"])


class StartIn(ApiBody):
    service: str = Field(..., min_length=1, max_length=64)
    channel: ChannelName
    to: str | None = Field(None, max_length=320)
    customer_id: uuid.UUID | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    message: str | None = Field(None, min_length=1, max_length=LONGEST_TEXT)


# 404: a customer_id that names no customer.
@router.post("/conversations", status_code=201, responses=refusals(404))
async def start_conversation(
    request: Request,
    body: StartIn,
    actor: Annotated[str, Depends(require_api_key)],
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    app = state(request)
    settings = app.settings

    def work(session: Session) -> Answer:
        started = start_outbound(
            session,
            service=body.service,
            channel=body.channel,
            to=body.to,
            customer_id=body.customer_id,
            context=body.context,
            message=body.message,
            now=utcnow(),
            defaults=settings.default_policies(),
            region=settings.default_region,
        )
        session.flush()
        view = conversation_detail(session, started.conversation_id)
        assert view is not None
        return Answer(
            201,
            view.model_dump(mode="json") | {"outbox_id": started.outbox_id},
            customer_id=view.customer_id,
            conversation_id=started.conversation_id,
        )

    status, payload, replayed = await run_in_threadpool(
        run_once,
        app.engine,
        owner=actor,
        key=idempotency_key,
        body=body.model_dump(mode="json"),
        work=work,
        ttl=settings.idempotency_key_ttl_delta,
    )
    if not replayed:
        await run_in_threadpool(publish, app.waker, _produced(payload))
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return JSONResponse(payload, status_code=status, headers=headers)


def _produced(payload: dict[str, Any]) -> Produced:
    """The opening as written is delivered; without one, the agent's turn writes it."""
    conversation_id = uuid.UUID(payload["id"])
    if payload.get("outbox_id"):
        return Produced.of(deliveries=[payload["outbox_id"]], changed=[conversation_id])
    return Produced.of(turns=[conversation_id], changed=[conversation_id])
