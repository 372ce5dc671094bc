"""Customers: create, read, link addresses (explicit merges), erase, and their memory."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import ApiBody, require_api_key, state
from conversations.addresses import normalize_address
from conversations.channel_names import AddressKind
from conversations.customers import create_customer, link_address
from conversations.db import session_factory, transaction
from conversations.erasure import erase as erase_everywhere
from conversations.errors import CustomerNotFound, InvalidAddress
from conversations.models import Customer, Identity
from conversations.types import iso, utcnow
from conversations.wakeup import Produced, publish
from memory.store import recall

router = APIRouter(prefix="/v1/customers", tags=["customers"])


class CustomerIn(ApiBody):
    external_id: str | None = Field(None, max_length=128)
    name: str | None = Field(None, max_length=200)
    phones: list[str] = Field(default_factory=list, max_length=20)
    emails: list[str] = Field(default_factory=list, max_length=20)
    chat_ids: list[str] = Field(default_factory=list, max_length=20)
    attributes: dict[str, Any] = Field(default_factory=dict)


class IdentityIn(ApiBody):
    kind: AddressKind
    address: str = Field(..., min_length=1, max_length=320)
    merge: bool = False


class IdentityView(BaseModel):
    kind: str
    address: str
    opted_out_at: datetime | None


class CustomerView(BaseModel):
    id: uuid.UUID
    external_id: str | None
    name: str | None
    attributes: dict[str, Any]
    identities: list[IdentityView]
    created_at: datetime


def customer_view(session: Session, customer_id: uuid.UUID) -> CustomerView | None:
    customer = session.get(Customer, customer_id)
    if customer is None:
        return None
    identities = session.scalars(
        select(Identity).where(Identity.customer_id == customer_id).order_by(Identity.id)
    )
    return CustomerView(
        id=customer.id,
        external_id=customer.external_id,
        name=customer.name,
        attributes=customer.attributes or {},
        created_at=customer.created_at,
        identities=[
            IdentityView(kind=i.kind, address=i.address, opted_out_at=i.opted_out_at)
            for i in identities
        ],
    )


def _normalized(kind: str, field: str, values: list[str], region: str) -> list[tuple[str, str]]:
    out = []
    for i, value in enumerate(values):
        try:
            out.append((kind, normalize_address(kind, value, region)))
        except InvalidAddress as exc:
            raise InvalidAddress(f"{field}[{i}]: {exc}") from None
    return out


@router.post("", status_code=201, response_model=CustomerView)
async def create(
    request: Request, body: CustomerIn, _: Annotated[str, Depends(require_api_key)]
) -> CustomerView:
    app = state(request)
    region = app.settings.default_region
    addresses = (
        _normalized("phone", "phones", body.phones, region)
        + _normalized("email", "emails", body.emails, region)
        + _normalized("chat", "chat_ids", body.chat_ids, region)
    )

    def write() -> CustomerView:
        with transaction(app.engine) as session:
            customer = create_customer(
                session,
                external_id=body.external_id,
                name=body.name,
                attributes=body.attributes,
                addresses=addresses,
            )
            view = customer_view(session, customer.id)
        assert view is not None
        return view

    return await run_in_threadpool(write)


@router.get("/{customer_id}", response_model=CustomerView)
async def read(
    request: Request, customer_id: uuid.UUID, _: Annotated[str, Depends(require_api_key)]
) -> CustomerView:
    app = state(request)

    def get() -> CustomerView | None:
        with session_factory(app.engine)() as session:
            return customer_view(session, customer_id)

    found = await run_in_threadpool(get)
    if found is None:
        raise CustomerNotFound(f"no customer {customer_id}")
    return found


@router.post("/{customer_id}/identities", status_code=201)
async def add_identity(
    request: Request,
    customer_id: uuid.UUID,
    body: IdentityIn,
    actor: Annotated[str, Depends(require_api_key)],
) -> dict[str, Any]:
    app = state(request)
    try:
        address = normalize_address(body.kind, body.address, app.settings.default_region)
    except InvalidAddress as exc:
        raise InvalidAddress(f"address: {exc}") from None

    def write() -> dict[str, Any]:
        with transaction(app.engine) as session:
            if session.get(Customer, customer_id) is None:
                raise CustomerNotFound(f"no customer {customer_id}")
            linked = link_address(
                session,
                customer_id,
                kind=body.kind,
                address=address,
                merge=body.merge,
                actor=actor,
                now=utcnow(),
            )
            view = customer_view(session, customer_id)
        merged = str(linked.merged_customer_id) if linked.merged_customer_id else None
        return {"customer": view.model_dump(mode="json") if view else None, "merged": merged}

    return await run_in_threadpool(write)


@router.delete("/{customer_id}", status_code=204)
async def erase(
    request: Request, customer_id: uuid.UUID, _: Annotated[str, Depends(require_api_key)]
) -> None:
    app = state(request)
    if not await run_in_threadpool(erase_everywhere, app.engine, customer_id):
        raise CustomerNotFound(f"no customer {customer_id}")
    # customer.erased, owed to webhook endpoints, was committed with the erasure.
    await run_in_threadpool(publish, app.waker, Produced.of(other_events=True))


@router.get("/{customer_id}/memory")
async def memory(
    request: Request, customer_id: uuid.UUID, _: Annotated[str, Depends(require_api_key)]
) -> dict[str, Any]:
    app = state(request)
    retention = app.settings.memory_retention_delta

    def read() -> list[dict[str, Any]] | None:
        with session_factory(app.engine)() as session:
            if session.get(Customer, customer_id) is None:
                return None
            return [
                {
                    "kind": m.kind,
                    "text": m.text,
                    "created_at": iso(m.created_at),
                    "conversation_id": str(m.conversation_id) if m.conversation_id else None,
                }
                for m in recall(session, customer_id, now=utcnow(), retention=retention)
            ]

    entries = await run_in_threadpool(read)
    if entries is None:
        raise CustomerNotFound(f"no customer {customer_id}")
    return {
        "customer_id": str(customer_id),
        "retention": app.settings.memory_retention,
        "entries": entries,
    }
