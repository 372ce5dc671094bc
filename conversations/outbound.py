"""Outbound conversations started by the business (the outbound API and ``dormouse send``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conversations.addresses import normalize_address
from conversations.channel_names import CHANNELS, check_text
from conversations.customers import resolve_customer, send_refusal
from conversations.errors import DormouseError, InvalidAddress
from conversations.ingest import insert_conversation
from conversations.models import OPEN_CONVERSATION, Conversation, Customer, Identity
from conversations.outbox import enqueue_reply
from conversations.states import Role
from conversations.timeout_store import refresh_deadline
from conversations.timeouts import Policy


class OutboundRefused(DormouseError):
    """``status`` is the HTTP answer; ``conversation_id`` names the open one on a 409."""

    def __init__(self, status: int, reason: str, conversation_id: uuid.UUID | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.conversation_id = status, reason, conversation_id
        self.http_status = status

    def refers_to(self) -> dict[str, str]:
        if self.conversation_id is None:
            return {}
        return {"conversation_id": str(self.conversation_id)}


@dataclass(frozen=True, slots=True)
class Started:
    conversation_id: uuid.UUID
    outbox_id: int | None  # the message as written, or None when the agent writes it


def start_outbound(
    session: Session,
    *,
    service: str,
    channel: str,
    to: str | None,
    customer_id: uuid.UUID | None,
    context: dict[str, Any],
    message: str | None,
    now: datetime,
    defaults: Mapping[str, Policy],
    region: str,
) -> Started:
    kind = CHANNELS.get(channel)
    if kind is None:
        raise OutboundRefused(422, f"channel: unknown channel {channel!r}")
    if (to is None) == (customer_id is None):
        raise OutboundRefused(422, "give exactly one of to and customer_id")
    if message is not None:
        check_text(channel, message, "message")
    if to is not None:
        try:
            address = normalize_address(kind, to, region)
        except InvalidAddress as exc:
            raise OutboundRefused(422, f"to: {exc}") from None
        customer = resolve_customer(session, kind, address)
    else:
        known = session.get(Customer, customer_id)
        if known is None:
            raise OutboundRefused(404, f"no customer {customer_id}")
        found = session.scalar(
            select(Identity.address)
            .where(Identity.customer_id == customer_id, Identity.kind == kind)
            .order_by(Identity.id.desc())
            .limit(1)
        )
        if found is None:
            raise OutboundRefused(422, f"customer_id: customer has no {kind} address")
        customer, address = known.id, found
    refusal = send_refusal(session, kind, address)
    if refusal is not None:
        raise OutboundRefused(409, f"{address}: {refusal}")

    conversation = insert_conversation(
        session,
        customer,
        service=service,
        channel=channel,
        address=address,
        now=now,
        context=context,
        wants_turn=message is None,
    )
    if conversation is None:
        conversation_id = _open_id(session, customer, service)
        raise OutboundRefused(
            409,
            f"customer already has open conversation {conversation_id} for service {service!r};"
            " resume it or finish it first",
            conversation_id,
        )
    outbox_id = None
    if message is not None:
        outbox_id = enqueue_reply(
            session,
            conversation_id=conversation.id,
            channel=channel,
            to=address,
            text=message,
            role=Role.API,
            turn=None,
            now=now,
        )
    refresh_deadline(session, conversation.id, defaults=defaults)
    return Started(conversation.id, outbox_id)


def _open_id(session: Session, customer_id: uuid.UUID, service: str) -> uuid.UUID | None:
    return session.scalar(
        select(Conversation.id).where(
            Conversation.customer_id == customer_id,
            Conversation.service == service,
            OPEN_CONVERSATION,
        )
    )
