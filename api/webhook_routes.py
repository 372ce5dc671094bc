"""Event webhooks under /v1: endpoints (/v1/webhooks), their deliveries, and the events
themselves (/v1/events), in the bodies receivers get."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.deps import ApiBody, require_api_key, state
from api.pages import DESCRIPTION, PAGE_HEADERS, decode_id, page
from api.problems import refusals
from conversations import webhook_endpoints as store
from conversations import webhook_outbox
from conversations.db import session_factory, transaction
from conversations.errors import Conflict, NotFound
from conversations.events import WEBHOOK_TYPES
from conversations.models import WebhookDelivery
from conversations.types import utcnow
from conversations.webhook_bodies import filters, read

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["webhooks"])

EventType = Literal[
    "conversation.started",
    "message.received",
    "message.sent",
    "message.delivery_updated",
    "conversation.handoff",
    "conversation.handback",
    "conversation.held",
    "conversation.limited",
    "conversation.released",
    "conversation.finished",
    "customer.erased",
]
assert set(EventType.__args__) == set(WEBHOOK_TYPES)  # type: ignore[attr-defined]


class EndpointIn(ApiBody):
    url: str = Field(..., min_length=1, max_length=2000, description="http(s) URL")
    event_types: list[EventType] = Field(
        default_factory=list, max_length=16, description="empty or omitted: every type"
    )
    service: str | None = Field(None, min_length=1, max_length=64, description="only this one")
    description: str = Field("", max_length=500)


class EndpointPatch(ApiBody):
    url: str | None = Field(None, min_length=1, max_length=2000)
    event_types: list[EventType] | None = Field(None, max_length=16)
    service: str | None = Field(None, max_length=64, description='"" for every service')
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = None


class Endpoint(BaseModel):
    id: uuid.UUID
    url: str
    description: str
    event_types: list[str] = Field(description="empty: every type")
    service: str | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="after a rotation, until when the old secret signs too"
    )
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(Endpoint):
    secret: str = Field(description="whsec_…: shown once; verify signatures with it")


class Delivery(BaseModel):
    id: int
    event_id: str
    conversation_id: uuid.UUID | None
    status: str = Field(description="pending, sending, delivered or failed")
    attempts: int
    next_attempt_at: datetime | None = Field(description="the next retry, when pending")
    last_status_code: int | None
    last_latency_ms: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class EventOut(BaseModel):
    type: str
    id: str
    timestamp: str
    data: dict[str, Any]
    cursor: int = Field(description="pass as after= to read the events after this one")


def _endpoint(view: store.EndpointView) -> dict[str, Any]:
    return {name: getattr(view, name) for name in Endpoint.model_fields}


@router.post("/webhooks", status_code=201, response_model=EndpointWithSecret)
async def create_endpoint(request: Request, body: EndpointIn) -> dict[str, Any]:
    """A new endpoint; the answer carries its ``secret``, shown this once."""
    app = state(request)

    def write() -> dict[str, Any]:
        url = store.check_url(body.url, app.settings)  # resolves its host: off the loop
        with transaction(app.engine) as session:
            view, secret = store.create(
                session,
                url=url,
                event_types=store.check_types(list(body.event_types)),
                service=body.service,
                description=body.description,
                now=utcnow(),
            )
        return {**_endpoint(view), "secret": secret}

    return await run_in_threadpool(write)


@router.get("/webhooks", response_model=list[Endpoint])
async def list_endpoints(request: Request) -> list[dict[str, Any]]:
    app = state(request)

    def read_all() -> list[dict[str, Any]]:
        with session_factory(app.engine)() as session:
            return [_endpoint(v) for v in store.list_all(session)]

    return await run_in_threadpool(read_all)


@router.get("/webhooks/{endpoint_id}", response_model=Endpoint)
async def get_endpoint(request: Request, endpoint_id: uuid.UUID) -> dict[str, Any]:
    app = state(request)

    def read_one() -> dict[str, Any]:
        with session_factory(app.engine)() as session:
            return _endpoint(store.view(store.get(session, endpoint_id)))

    return await run_in_threadpool(read_one)


@router.patch("/webhooks/{endpoint_id}", response_model=Endpoint)
async def update_endpoint(
    request: Request, endpoint_id: uuid.UUID, body: EndpointPatch
) -> dict[str, Any]:
    """Change what is given; ``enabled: true`` re-enables a disabled endpoint (its pending
    deliveries resume)."""
    app = state(request)
    changes: dict[str, object] = body.model_dump(exclude_unset=True)
    for name in ("url", "event_types", "description", "enabled"):
        if name in changes and changes[name] is None:
            del changes[name]  # null means "leave it", as omitting it does
    if "event_types" in changes:
        changes["event_types"] = store.check_types(list(body.event_types or []))

    def write() -> dict[str, Any]:
        if "url" in changes:  # resolves its host: off the loop
            changes["url"] = store.check_url(str(changes["url"]), app.settings)
        with transaction(app.engine) as session:
            return _endpoint(store.update(session, endpoint_id, changes, now=utcnow()))

    answer = await run_in_threadpool(write)
    if changes.get("enabled"):
        app.waker.webhooks(None)  # what waited for it is due
    return answer


@router.post("/webhooks/{endpoint_id}/rotate", response_model=EndpointWithSecret)
async def rotate_secret(request: Request, endpoint_id: uuid.UUID) -> dict[str, Any]:
    """A new secret, shown once; the old one keeps signing beside it for 24 hours."""
    app = state(request)

    def write() -> dict[str, Any]:
        with transaction(app.engine) as session:
            view, secret = store.rotate(session, endpoint_id, now=utcnow())
        return {**_endpoint(view), "secret": secret}

    return await run_in_threadpool(write)


@router.delete("/webhooks/{endpoint_id}", status_code=204)
async def delete_endpoint(request: Request, endpoint_id: uuid.UUID) -> Response:
    """The endpoint and its deliveries, sent or not."""
    app = state(request)

    def write() -> None:
        with transaction(app.engine) as session:
            store.delete(session, endpoint_id)

    await run_in_threadpool(write)
    return Response(status_code=204)


@router.get(
    "/webhooks/{endpoint_id}/deliveries",
    response_model=list[Delivery],
    responses={200: {"headers": PAGE_HEADERS}},
)
async def list_deliveries(
    request: Request,
    response: Response,
    endpoint_id: uuid.UUID,
    status: Literal["pending", "sending", "delivered", "failed"] | None = None,
    cursor: Annotated[str | None, Query(max_length=200, description=DESCRIPTION)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[Delivery]:
    """The endpoint's deliveries, newest first: status, attempts, the last answer's code and
    latency, the next retry."""
    app = state(request)
    before = decode_id(cursor) if cursor is not None else None

    def read_page() -> list[Delivery]:
        d = WebhookDelivery
        with session_factory(app.engine)() as session:
            store.get(session, endpoint_id)
            query = select(d).where(d.endpoint_id == endpoint_id)
            if status is not None:
                query = query.where(d.status == status)
            if before is not None:
                query = query.where(d.id < before)
            rows = session.scalars(query.order_by(d.id.desc()).limit(limit + 1))
            return [_delivery(r) for r in rows]

    found = await run_in_threadpool(read_page)
    return page(found, limit, lambda d: (d.id,), request, response)


def _delivery(row: WebhookDelivery) -> Delivery:
    return Delivery(
        id=row.id,
        event_id=f"evt_{row.event_id}",
        conversation_id=row.conversation_id,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status == webhook_outbox.PENDING else None,
        last_status_code=row.last_status_code,
        last_latency_ms=row.last_latency_ms,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
    )


@router.post(
    "/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=Delivery,
)
async def retry_delivery(request: Request, endpoint_id: uuid.UUID, delivery_id: int) -> Delivery:
    """Send one delivery again now, with its event's ``webhook-id`` (receivers dedupe on it).
    409 while it is being sent."""
    app = state(request)

    def write() -> Delivery:
        with transaction(app.engine) as session:
            store.get(session, endpoint_id)
            row = session.get(WebhookDelivery, delivery_id)
            if row is None or row.endpoint_id != endpoint_id:
                raise NotFound(f"no delivery {delivery_id} for webhook endpoint {endpoint_id}")
            if not webhook_outbox.replay(session, endpoint_id, delivery_id, utcnow()):
                raise Conflict(f"delivery {delivery_id} is being sent right now")
            session.refresh(row)
            return _delivery(row)

    answer = await run_in_threadpool(write)
    app.waker.webhook(delivery_id)
    return answer


@router.get(
    "/events",
    response_model=list[EventOut],
    responses={200: {"headers": PAGE_HEADERS}, **refusals(422)},
)
async def list_events(
    request: Request,
    response: Response,
    conversation_id: uuid.UUID | None = None,
    type: EventType | None = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="the cursor of the last seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[EventOut]:
    """Events oldest first, as webhook receivers get them, past ``after``; page on with the
    last ``cursor`` (the ``X-Next-Cursor`` header says when more follow)."""
    app = state(request)

    def read_page() -> list[EventOut]:
        with session_factory(app.engine)() as session:
            found = read(session, *filters(conversation_id, type, after), limit=limit + 1)
        return [EventOut(cursor=cursor, **body) for cursor, body in found]

    found = await run_in_threadpool(read_page)
    shown = found[:limit]
    if len(found) > limit:
        cursor = str(shown[-1].cursor)
        response.headers["X-Next-Cursor"] = cursor
        url = request.url.include_query_params(after=cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return shown
