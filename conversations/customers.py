"""Resolve an inbound address to a customer. Linking and merging come with the memory store."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from conversations import statements
from conversations import statements as sql
from conversations.errors import ConcurrentChange
from conversations.models import Identity


def resolve_customer(
    session: Session, kind: str, address: str, *, inbound: bool = False
) -> uuid.UUID:
    """The customer owning ``address``, created on first sight.

    ``inbound``: the customer just wrote from this address, so a bounce recorded against it
    no longer holds.
    """
    return customer_for(session, kind, address, inbound=inbound)[0]


def customer_for(
    session: Session, kind: str, address: str, *, inbound: bool = False
) -> tuple[uuid.UUID, bool]:
    """(customer owning ``address``, whether it was created just now).

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
        return row.customer_id, False
    new_id = uuid.uuid4()
    conn.execute(statements.INSERT_CUSTOMER, {"id": new_id})
    won = conn.execute(
        statements.insert_identity(conn.dialect.name), {**params, "customer_id": new_id}
    ).scalar()
    if won is not None:
        return new_id, True
    conn.execute(statements.DELETE_CUSTOMER, {"customer_id": new_id})
    found = _customer_id(session, kind, address)
    if found is None:  # the winner's identity is gone already (erased): start over
        raise ConcurrentChange(f"identity {kind}:{address} changed concurrently")
    return found, False


def _customer_id(session: Session, kind: str, address: str) -> uuid.UUID | None:
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
    return result.rowcount > 0


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
    return result.rowcount


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
