"""Customers: find by address or name, see identities and opt-out state, link an address,
erase (after a page naming everything that will be deleted)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, or_, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from api.console.render import page
from api.console.session import current_operator, field, flash, posted_form
from api.customer_routes import CustomerView, customer_view
from api.deps import state
from conversations.addresses import normalize_address
from conversations.channel_names import CHANNEL_NAMES, address_kind
from conversations.customers import link_address
from conversations.db import session_factory, transaction
from conversations.erasure import erase
from conversations.errors import DormouseError, InvalidAddress
from conversations.models import (
    Conversation,
    Customer,
    Identity,
    MemoryEntry,
    Message,
    OutboxRow,
)
from conversations.operators import actor_of, record_action
from conversations.types import utcnow
from conversations.views import ConversationSummary
from memory.store import Memory, recall

router = APIRouter()
ADDRESS_KINDS = tuple(dict.fromkeys(address_kind(c) for c in CHANNEL_NAMES))


@dataclass(frozen=True, slots=True)
class Found:
    id: uuid.UUID
    name: str | None
    addresses: list[str]
    conversations: int


def _search(request: Request, q: str) -> list[Found]:
    like = f"%{q.strip().lower()}%"
    with session_factory(state(request).engine)() as session:
        ids = session.scalars(
            select(Customer.id)
            .outerjoin(Identity, Identity.customer_id == Customer.id)
            .where(
                or_(
                    func.lower(Identity.address).like(like),
                    func.lower(func.coalesce(Customer.name, "")).like(like),
                    func.lower(func.coalesce(Customer.external_id, "")).like(like),
                )
            )
            .distinct()
            .limit(50)
        ).all()
        found = []
        for cid in ids:
            customer = session.get_one(Customer, cid)
            addresses = session.scalars(
                select(Identity.address).where(Identity.customer_id == cid).order_by(Identity.id)
            ).all()
            held = session.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.customer_id == cid)
            )
            found.append(Found(cid, customer.name, list(addresses), int(held or 0)))
        return found


@router.get("/customers")
async def customers(
    request: Request,
    _: Annotated[str, Depends(current_operator)],
    q: Annotated[str, Query(max_length=320)] = "",
) -> HTMLResponse:
    found = await run_in_threadpool(_search, request, q) if q.strip() else None
    return page(request, "customers.html", {"title": "Customers", "q": q, "found": found})


@dataclass(frozen=True, slots=True)
class CustomerPage:
    customer: CustomerView
    conversations: list[ConversationSummary]
    memory: list[Memory]
    counts: dict[str, int]


def _read(request: Request, customer_id: uuid.UUID) -> CustomerPage | None:
    app = state(request)
    with session_factory(app.engine)() as session:
        view = customer_view(session, customer_id)
        if view is None:
            return None
        convs = session.scalars(
            select(Conversation)
            .where(Conversation.customer_id == customer_id)
            .order_by(Conversation.updated_at.desc())
            .limit(100)
        ).all()
        in_theirs = select(Conversation.id).where(Conversation.customer_id == customer_id)

        def count(model: Any, *where: Any) -> int:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        counts = {
            "conversations": count(Conversation, Conversation.customer_id == customer_id),
            "messages": count(Message, Message.conversation_id.in_(in_theirs)),
            "memory": count(MemoryEntry, MemoryEntry.customer_id == customer_id),
            "pending": count(
                OutboxRow,
                OutboxRow.conversation_id.in_(in_theirs),
                OutboxRow.status.in_(("pending", "sending")),
            ),
        }
        return CustomerPage(
            customer=view,
            conversations=[ConversationSummary.model_validate(c) for c in convs],
            memory=recall(
                session, customer_id, now=utcnow(), retention=app.settings.memory_retention_delta
            ),
            counts=counts,
        )


async def _customer_page(
    request: Request, customer_id: uuid.UUID, template: str, **more: Any
) -> HTMLResponse:
    found = await run_in_threadpool(_read, request, customer_id)
    if found is None:
        return page(
            request,
            "refused.html",
            {"title": "No such customer", "detail": "They may have been erased."},
            status=404,
        )
    title = found.customer.name or (
        found.customer.identities[0].address if found.customer.identities else "Customer"
    )
    return page(
        request,
        template,
        {"title": title, "p": found, "kinds": ADDRESS_KINDS, **more},
    )


@router.get("/customers/{customer_id}")
async def customer(
    request: Request, customer_id: uuid.UUID, _: Annotated[str, Depends(current_operator)]
) -> HTMLResponse:
    return await _customer_page(request, customer_id, "customer.html")


@router.post("/customers/{customer_id}/identities")
async def link(
    request: Request,
    customer_id: uuid.UUID,
    name: Annotated[str, Depends(current_operator)],
    form: Annotated[FormData, Depends(posted_form)],
) -> RedirectResponse:
    app = state(request)
    kind, raw, merge = field(form, "kind"), field(form, "address"), field(form, "merge") == "yes"

    def write() -> str:
        if kind not in ADDRESS_KINDS:
            raise InvalidAddress(f"unknown kind of address {kind!r}")
        address = normalize_address(kind, raw, app.settings.default_region)
        with transaction(app.engine) as session:
            now = utcnow()
            linked = link_address(
                session,
                customer_id,
                kind=kind,
                address=address,
                merge=merge,
                actor=actor_of(name),
                now=now,
            )
            record_action(
                session,
                actor_of(name),
                "link_address",
                now=now,
                customer_id=customer_id,
                kind=kind,
                merged=str(linked.merged_customer_id) if linked.merged_customer_id else None,
            )
        merged = " (merged the customer who had it)" if linked.merged_customer_id else ""
        return f"Linked {address}{merged}."

    try:
        flash(request, "ok", await run_in_threadpool(write))
    except DormouseError as exc:
        if exc.http_status >= 500:
            raise
        hint = (
            " Tick “merge” to bring that customer's history over." if exc.http_status == 409 else ""
        )
        flash(request, "error", f"{exc}.{hint}".replace("..", "."))
    return RedirectResponse(f"/console/customers/{customer_id}", status_code=303)


@router.get("/customers/{customer_id}/erase")
async def erase_review(
    request: Request, customer_id: uuid.UUID, _: Annotated[str, Depends(current_operator)]
) -> HTMLResponse:
    return await _customer_page(request, customer_id, "customer_erase.html")


@router.post("/customers/{customer_id}/erase")
async def erase_customer(
    request: Request,
    customer_id: uuid.UUID,
    name: Annotated[str, Depends(current_operator)],
    form: Annotated[FormData, Depends(posted_form)],
) -> Response:
    app = state(request)
    if field(form, "confirm") != "erase":
        return RedirectResponse(f"/console/customers/{customer_id}/erase", status_code=303)

    def write() -> bool:
        if not erase(app.engine, customer_id):
            return False
        with transaction(app.engine) as session:
            # Only the id: the audit must not keep what the erasure removed.
            record_action(
                session, actor_of(name), "erase_customer", now=utcnow(), customer_id=customer_id
            )
        return True

    if await run_in_threadpool(write):
        flash(request, "ok", f"Erased customer {customer_id} and everything about them.")
    else:
        flash(request, "error", f"No customer {customer_id}: erased already?")
    return RedirectResponse("/console/customers", status_code=303)
