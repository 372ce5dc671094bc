"""Statements of the hot paths (ingest, a turn's replies), built once at import and executed
with bound parameters.

A webhook runs a handful of statements, and their Python cost is what bounds how many
webhooks one API process accepts per second (and how many turns a worker runs). SQLAlchemy
derives a cache key every time a statement is built; one built at import keeps its key,
which halves the CPU per statement (about 250 → 120 µs here; benchmarks/README.md).
Statements with ON CONFLICT differ by dialect and are built once for each.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from conversations.models import (
    Base,
    Conversation,
    Customer,
    ErasedProviderId,
    Identity,
    Message,
    OutboxRow,
    TimeoutPolicy,
)
from conversations.states import ConversationStatus

customers = Customer.__table__
identities = Identity.__table__
conversations = Conversation.__table__
messages = Message.__table__
policies = TimeoutPolicy.__table__
outbox = OutboxRow.__table__
erased = ErasedProviderId.__table__

# A turn's lease is still held by its token: every write of a turn is conditional on it.
LEASE_HELD = and_(
    conversations.c.id == bindparam("conversation_id"),
    conversations.c.lease_token == bindparam("token"),
    conversations.c.status == ConversationStatus.RUNNING,
)

# Rendered into the SQL, as in models.OPEN_CONVERSATION: the partial index must stay usable.
_open = conversations.c.status != literal("finished", literal_execute=True)

MESSAGE_BY_PROVIDER_ID = select(
    messages.c.id, messages.c.conversation_id, messages.c.inbound_state
).where(
    messages.c.channel == bindparam("channel"),
    messages.c.provider_id == bindparam("provider_id"),
)

# A tombstone of an erased customer's message (conversations/tombstones.py): one primary key.
ERASED_DIGEST = select(erased.c.digest).where(erased.c.digest == bindparam("digest"))

IDENTITY_BY_ADDRESS = select(
    identities.c.customer_id, identities.c.undeliverable_at, identities.c.opted_out_at
).where(identities.c.kind == bindparam("kind"), identities.c.address == bindparam("address"))

INSERT_CUSTOMER = insert(customers)
DELETE_CUSTOMER = delete(customers).where(customers.c.id == bindparam("customer_id"))

# What ingest needs of the open conversation: its id, status and what picks its policy.
# FOR UPDATE: see ingest._open_for for why the row is locked.
_CUSTOMERS_OPEN = (
    select(
        conversations.c.id,
        conversations.c.status,
        conversations.c.service,
        conversations.c.channel,
        conversations.c.timeout_override_set,
        conversations.c.timeout_override_seconds,
    )
    .where(conversations.c.customer_id == bindparam("customer_id"), _open)
    .with_for_update()
)
OPEN_CONVERSATION_FOR_UPDATE = _CUSTOMERS_OPEN.where(
    conversations.c.service == bindparam("service")
)


def open_conversation_on_route(
    services: frozenset[str] | None, excluded: frozenset[str], service: str
) -> Select[Any]:
    """The customer's most recently active open conversation among ``services`` (None: any
    service but ``excluded``); ``service`` always qualifies. Locked like the one above."""
    among: ColumnElement[bool]
    if services is not None:
        among = conversations.c.service.in_(sorted(services | {service}))
    else:
        among = or_(
            conversations.c.service == service, conversations.c.service.not_in(sorted(excluded))
        )
    return _CUSTOMERS_OPEN.where(among).order_by(conversations.c.last_activity_at.desc()).limit(1)


# channel, address, last_activity_at, updated_at and the deadline columns come as parameters.
TOUCH_CONVERSATION = (
    update(conversations)
    .where(conversations.c.id == bindparam("conversation_id"))
    .values(inbound_count=conversations.c.inbound_count + 1)
)

ALL_POLICIES = select(policies)

INSERT_MESSAGE = insert(messages).returning(messages.c.id)
INSERT_OUTBOX_ROW = insert(outbox).returning(outbox.c.id)


def _insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can take ON CONFLICT, in ``dialect``'s own construct."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


@cache
def insert_identity(dialect: str) -> Insert:
    """New identity, or nothing if the address is taken (a concurrent first message won)."""
    return (
        _insert(dialect, identities)
        .on_conflict_do_nothing(index_elements=["kind", "address"])
        .returning(identities.c.customer_id)
    )


@cache
def insert_open_conversation(dialect: str) -> Insert:
    """New open conversation, or nothing if the customer has one open for the service."""
    return (
        _insert(dialect, conversations)
        .on_conflict_do_nothing(
            index_elements=["customer_id", "service"],
            # The partial index's own predicate, as text: a bound value would not match it.
            index_where=text("status <> 'finished'"),
        )
        .returning(conversations.c.id)
    )


@cache
def insert_message(dialect: str) -> Insert:
    """New message, or nothing if its (channel, provider id) is stored (a retried webhook)."""
    return (
        _insert(dialect, messages)
        .on_conflict_do_nothing(index_elements=["channel", "provider_id"])
        .returning(messages.c.id)
    )


# Why nothing may be sent to an address now (opted out, bounced).
REFUSAL = select(identities.c.opted_out_at, identities.c.undeliverable_at).where(
    identities.c.kind == bindparam("kind"), identities.c.address == bindparam("address")
)


def dialect_insert(session: Session, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """INSERT with ON CONFLICT support on both backends."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)
