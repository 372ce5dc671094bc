"""Who owns an address: customers and the identities that resolve to them.

Resolve an inbound address (creating its customer on first sight), opt-out and bounce
state, and what the API does to customers: create, link an address, merge (only when
asked, recorded), erase. One module, so ingest, delivery and the customer API agree.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from conversations import events, statements
from conversations import statements as sql
from conversations.db import rowcount
from conversations.errors import AddressTaken, ConcurrentChange, ExternalIdTaken
from conversations.lifecycle import finish
from conversations.models import (
    Conversation,
    Customer,
    CustomerMerge,
    DeliveryEvent,
    IdempotencyKey,
    Identity,
    MemoryEntry,
    Message,
)
from conversations.states import OPEN_STATUSES, FinishReason
from conversations.tombstones import bury
from conversations.types import utcnow


def resolve_customer(
    session: Session, kind: str, address: str, *, inbound: bool = False
) -> uuid.UUID:
    """The customer owning ``address``, created on first sight.

    ``inbound``: the customer just wrote from this address, so a bounce recorded against it
    no longer holds.
    """
    return customer_for(session, kind, address, inbound=inbound).customer_id


class Sender(NamedTuple):
    customer_id: uuid.UUID
    new: bool  # created just now
    opted_out: bool  # the address asked for no messages (SMS STOP)


def customer_for(session: Session, kind: str, address: str, *, inbound: bool = False) -> Sender:
    """The customer owning ``address`` (created on first sight), and the address's state.

    Two first messages from one new address at once converge without a savepoint: the
    identity insert of the loser does nothing (ON CONFLICT), it removes the customer row it
    made and reads the winner's.
    """
    conn = session.connection()
    params = {"kind": kind, "address": address}
    row = conn.execute(statements.IDENTITY_BY_ADDRESS, params).first()
    if row is not None:
        if inbound and row.undeliverable_at is not None:
            mark_undeliverable(session, kind, [address], None)
        return Sender(row.customer_id, False, row.opted_out_at is not None)
    new_id = uuid.uuid4()
    conn.execute(statements.INSERT_CUSTOMER, {"id": new_id})
    won = conn.execute(
        statements.insert_identity(conn.dialect.name), {**params, "customer_id": new_id}
    ).scalar()
    if won is not None:
        return Sender(new_id, True, False)
    conn.execute(statements.DELETE_CUSTOMER, {"customer_id": new_id})
    found = owner_of(session, kind, address)
    if found is None:  # the winner's identity is gone already (erased): start over
        raise ConcurrentChange(f"identity {kind}:{address} changed concurrently")
    return Sender(found, False, False)


def owner_of(session: Session, kind: str, address: str) -> uuid.UUID | None:
    return session.scalar(
        select(Identity.customer_id).where(Identity.kind == kind, Identity.address == address)
    )


def set_opt_out(session: Session, kind: str, address: str, at: datetime | None) -> bool:
    """Opt an address out (``at``) or back in (None). Returns whether an identity changed."""
    result = session.execute(
        update(Identity)
        .where(Identity.kind == kind, Identity.address == address)
        .values(opted_out_at=at)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) > 0


def mark_undeliverable(
    session: Session, kind: str, addresses: list[str], at: datetime | None
) -> int:
    """Record a bounce against known addresses (``at``), or clear it (None)."""
    if not addresses:
        return 0
    result = session.execute(
        update(Identity)
        .where(Identity.kind == kind, Identity.address.in_(addresses))
        .values(undeliverable_at=at)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


def send_refusal(session: Session, kind: str, address: str) -> str | None:
    """Why nothing may be sent to ``address`` now, or None."""
    row = session.execute(sql.REFUSAL, {"kind": kind, "address": address}).first()
    if row is None:
        return None
    if row.opted_out_at is not None:
        return "recipient opted out (STOP): never sent"
    if row.undeliverable_at is not None:
        return "address bounced (undeliverable) until the customer writes from it again"
    return None


# --- the customer API: create, link, merge, erase ------------------------------------------


def create_customer(
    session: Session,
    *,
    external_id: str | None,
    name: str | None,
    attributes: dict[str, Any],
    addresses: list[tuple[str, str]],
) -> Customer:
    """A customer with its (already normalized) addresses; refuses any address taken."""
    if external_id is not None:  # "" is an id like any other: unique too
        taken = session.scalar(select(Customer.id).where(Customer.external_id == external_id))
        if taken:
            raise ExternalIdTaken(external_id, taken)
    for kind, address in addresses:
        owner = owner_of(session, kind, address)
        if owner is not None:
            raise AddressTaken(kind, address, owner)
    customer = Customer(external_id=external_id, name=name, attributes=attributes)
    session.add(customer)
    session.flush()
    for kind, address in dict.fromkeys(addresses):
        session.add(Identity(customer_id=customer.id, kind=kind, address=address))
    session.flush()
    return customer


@dataclass(frozen=True, slots=True)
class Linked:
    identity_id: int
    merged_customer_id: uuid.UUID | None


def link_address(
    session: Session,
    customer_id: uuid.UUID,
    *,
    kind: str,
    address: str,
    merge: bool,
    actor: str,
    now: datetime,
) -> Linked:
    owner = owner_of(session, kind, address)
    if owner == customer_id:
        identity = session.scalars(
            select(Identity).where(Identity.kind == kind, Identity.address == address)
        ).one()
        return Linked(identity.id, None)
    if owner is not None:
        if not merge:
            raise AddressTaken(kind, address, owner)
        merge_customers(session, into=customer_id, merged=owner, actor=actor, now=now)
        identity = session.scalars(
            select(Identity).where(Identity.kind == kind, Identity.address == address)
        ).one()
        return Linked(identity.id, owner)
    identity = Identity(customer_id=customer_id, kind=kind, address=address, created_at=now)
    session.add(identity)
    session.flush()
    return Linked(identity.id, None)


def merge_customers(
    session: Session, *, into: uuid.UUID, merged: uuid.UUID, actor: str, now: datetime
) -> None:
    """Move everything of ``merged`` to ``into`` and delete ``merged``; recorded.

    Where both have an open conversation for the same service, the merged customer's one
    is finished (reason operator): one open conversation per (customer, service).
    """
    target_open = set(
        session.scalars(
            select(Conversation.service).where(
                Conversation.customer_id == into, Conversation.status.in_(OPEN_STATUSES)
            )
        )
    )
    finished = []
    for conv in session.scalars(
        select(Conversation).where(
            Conversation.customer_id == merged, Conversation.status.in_(OPEN_STATUSES)
        )
    ).all():
        if conv.service in target_open:
            finish(session, conv.id, reason=FinishReason.OPERATOR, now=now)
            finished.append(str(conv.id))
    for model in (Identity, Conversation, MemoryEntry, IdempotencyKey):
        session.execute(
            update(model)
            .where(model.customer_id == merged)
            .values(customer_id=into)
            .execution_options(synchronize_session=False)
        )
    session.execute(delete(Customer).where(Customer.id == merged))
    session.add(
        CustomerMerge(
            into_customer_id=into,
            merged_customer_id=merged,
            actor=actor,
            detail={"finished_conversations": finished},
            created_at=now,
        )
    )
    session.flush()


def erase_customer(session: Session, customer_id: uuid.UUID) -> bool:
    """Delete the customer and everything about them (cascades: identities, conversations,
    messages, outbox rows, events, memory, idempotency records). Provider status records of
    their messages go too; only digests of their provider message ids stay (tombstones)."""
    if session.get(Customer, customer_id) is None:
        return False
    provider_ids = select(Message.provider_id).where(
        Message.conversation_id.in_(
            select(Conversation.id).where(Conversation.customer_id == customer_id)
        ),
        Message.provider_id.is_not(None),
    )
    session.execute(
        delete(DeliveryEvent)
        .where(DeliveryEvent.provider_id.in_(provider_ids))
        .execution_options(synchronize_session=False)
    )
    bury(session, customer_id, utcnow())  # a replay of their webhooks stays a duplicate
    session.execute(delete(Customer).where(Customer.id == customer_id))
    # After the cascade took their conversations and events: the id only, nothing of theirs.
    events.record(session, None, events.ERASED, utcnow(), customer_id=str(customer_id))
    return True
