"""The console's inbox: conversations a page at a time, those waiting for a human first.

Ordered by (waiting rank, last activity, id): in the ``open`` view handoff conversations
come before the agent's, each group newest activity first, so someone waiting for a person
is never below the fold. Keyset pages on that order, like ``/v1/conversations``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, or_, select, tuple_
from sqlalchemy.orm import Session

from conversations.models import Conversation, Customer
from conversations.states import OPEN_STATUSES, ConversationStatus

VIEWS = ("open", "handoff", "held", "agent", "finished", "all")
_STATUSES: dict[str, tuple[str, ...]] = {
    "open": tuple(OPEN_STATUSES),
    "handoff": (ConversationStatus.HANDOFF,),
    "held": (ConversationStatus.HELD,),
    "agent": (ConversationStatus.SUSPENDED, ConversationStatus.RUNNING),
    "finished": (ConversationStatus.FINISHED,),
}
# What needs a person comes first: handoffs, then what is held for a decision.
_RANK = case(
    (Conversation.status == ConversationStatus.HANDOFF, 0),
    (Conversation.status == ConversationStatus.HELD, 0),
    else_=1,
)


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: uuid.UUID
    status: str
    service: str
    channel: str
    address: str
    customer_id: uuid.UUID
    customer_name: str | None
    handoff_reason: str | None
    held_reason: str | None
    finish_reason: str | None
    summary: str | None
    inbound_count: int
    updated_at: datetime
    rank: int


@dataclass(frozen=True, slots=True)
class Filters:
    view: str = "open"
    channel: str | None = None
    service: str | None = None
    search: str | None = None

    def conditions(self, *, with_view: bool = True) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if with_view and self.view in _STATUSES:
            found.append(Conversation.status.in_(_STATUSES[self.view]))
        if self.channel:
            found.append(Conversation.channel == self.channel)
        if self.service:
            found.append(Conversation.service == self.service)
        if self.search:
            # Addresses are stored normalized (E.164, lower-case email), names as written:
            # a case-insensitive substring finds "+1555…", "ada@" and "Lovelace" alike.
            like = f"%{self.search.strip().lower()}%"
            found.append(
                or_(
                    func.lower(Conversation.address).like(like),
                    func.lower(func.coalesce(Customer.name, "")).like(like),
                )
            )
        return found


def inbox_page(
    session: Session,
    filters: Filters,
    *,
    after: tuple[int, datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[InboxRow]:
    """Up to ``limit`` rows after ``after`` (the rank, updated_at and id of the last row seen)."""
    rank = _RANK if filters.view == "open" else case((Conversation.id.is_(None), 0), else_=1)
    query = (
        select(Conversation, Customer.name, rank.label("rank"))
        .join(Customer, Customer.id == Conversation.customer_id)
        .where(*filters.conditions())
        .order_by(rank, Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(limit)
    )
    if after is not None:
        at_rank, at, at_id = after
        query = query.where(
            or_(
                rank > at_rank,
                and_(
                    rank == at_rank, tuple_(Conversation.updated_at, Conversation.id) < (at, at_id)
                ),
            )
        )
    return [
        InboxRow(
            id=c.id,
            status=c.status,
            service=c.service,
            channel=c.channel,
            address=c.address,
            customer_id=c.customer_id,
            customer_name=name,
            handoff_reason=c.handoff_reason,
            held_reason=c.held_reason,
            finish_reason=c.finish_reason,
            summary=c.summary,
            inbound_count=c.inbound_count,
            updated_at=c.updated_at,
            rank=int(r),
        )
        for c, name, r in session.execute(query)
    ]


def view_counts(session: Session, filters: Filters) -> dict[str, int]:
    """How many conversations each view holds under the other filters (one grouped read)."""
    query = (
        select(Conversation.status, func.count())
        .join(Customer, Customer.id == Conversation.customer_id)
        .where(*filters.conditions(with_view=False))
        .group_by(Conversation.status)
    )
    by_status = {str(status): int(n) for status, n in session.execute(query)}
    counts = {
        view: sum(by_status.get(s, 0) for s in statuses) for view, statuses in _STATUSES.items()
    }
    counts["all"] = sum(by_status.values())
    return counts


def services(session: Session) -> list[str]:
    """Every service a conversation was ever for (the filter's choices)."""
    return list(
        session.scalars(select(Conversation.service).distinct().order_by(Conversation.service))
    )


def governed_by(session: Session, scope: tuple[str, str], scopes: set[tuple[str, str]]) -> int:
    """How many open conversations a policy for ``scope`` (service, channel; '' = any) would
    govern, given the scopes that have policies: those in it that no more specific policy
    governs ('applies to 1,204 open conversations'). A conversation's own override replaces
    only the inactivity, so it still counts: the nudge and closing message are the policy's."""
    service, channel = scope
    query = (
        select(Conversation.service, Conversation.channel, func.count())
        .where(Conversation.status.in_((ConversationStatus.SUSPENDED, ConversationStatus.RUNNING)))
        .group_by(Conversation.service, Conversation.channel)
    )
    if service:
        query = query.where(Conversation.service == service)
    if channel:
        query = query.where(Conversation.channel == channel)
    with_this = scopes | {scope}
    total = 0
    for conv_service, conv_channel, n in session.execute(query):
        # The precedence of conversations/timeouts.py: service+channel, channel, service, global.
        for candidate in (
            (conv_service, conv_channel),
            ("", conv_channel),
            (conv_service, ""),
            ("", ""),
        ):
            if candidate in with_this:
                total += int(n) if candidate == scope else 0
                break
    return total
