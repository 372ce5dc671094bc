"""Tables. The database is the truth; the broker only carries wake-ups."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    literal,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from conversations.types import BigIntPK, UTCDateTime, utcnow


class Base(DeclarativeBase):
    if TYPE_CHECKING:
        # Every model declares a __tablename__, so each is mapped to a Table (the base class
        # allows any FromClause, such as a join): insert(Model.__table__) type-checks.
        __table__: ClassVar[Table]


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("external_id", name="uq_customers_external_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    external_id: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    identities: Mapped[list[Identity]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", passive_deletes=True
    )


class Identity(Base):
    """An address (E.164 phone, lower-cased email, chat user id) that resolves to a customer."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("kind", "address", name="uq_identities_kind_address"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))
    # Set by an inbound STOP (or Twilio error 21610): nothing is ever sent to it until START.
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by a bounce naming it; cleared when the customer writes from it again.
    undeliverable_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="identities")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        # One open conversation per (customer, service): concurrent first messages converge.
        Index(
            "uq_conversations_open",
            "customer_id",
            "service",
            unique=True,
            postgresql_where=text("status <> 'finished'"),
            sqlite_where=text("status <> 'finished'"),
        ),
        # Redrive reads running conversations by lease expiry.
        Index("ix_conversations_status_lease", "status", "lease_expires_at"),
        # The timeout sweep reads only what is due: an index range, never every open row.
        Index("ix_conversations_status_expires", "status", "expires_at"),
        Index("ix_conversations_status_nudge", "status", "nudge_due_at"),
        # The retention purge reads finished conversations by age.
        Index("ix_conversations_status_finished", "status", "finished_at"),
        # The operators' list: newest activity first, paged by (updated_at, id).
        Index("ix_conversations_updated_id", "updated_at", "id"),
        Index(
            "ix_conversations_wrapup_pending",
            "finished_at",
            postgresql_where=text("status = 'finished' AND wrapped_up_at IS NULL"),
            sqlite_where=text("status = 'finished' AND wrapped_up_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    service: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16))
    finish_reason: Mapped[str | None] = mapped_column(String(16))
    handoff_reason: Mapped[str | None] = mapped_column(Text)
    held_reason: Mapped[str | None] = mapped_column(Text)  # status held: why no turn runs
    lease_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_attempts: Mapped[int] = mapped_column(Integer, default=0)
    turn_count: Mapped[int] = mapped_column(Integer, default=0)
    # Counted at ingest so a turn never COUNTs the whole history.
    inbound_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Inactivity deadline: last activity + effective timeout; NULL = never (or paused in
    # handoff). A stored, indexed column so the sweep reads only what is due.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    nudge_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    nudge_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Per-conversation override of the inactivity timeout: set + NULL seconds = never.
    timeout_override_set: Mapped[bool] = mapped_column(Boolean, default=False)
    timeout_override_seconds: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str | None] = mapped_column(Text)
    wrapped_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An outbound conversation whose opening message the agent writes: a turn with no inbound.
    wants_turn: Mapped[bool] = mapped_column(Boolean, default=False)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # When the redrive last published a wake-up for it (scheduler/sweeps.py).
    redriven_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TimeoutPolicy(Base):
    """An operator's inactivity policy for a scope; '' in a scope column means any."""

    __tablename__ = "timeout_policies"
    __table_args__ = (UniqueConstraint("service", "channel", name="uq_timeout_policies_scope"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(String(64), default="")
    channel: Mapped[str] = mapped_column(String(16), default="")
    inactivity_seconds: Mapped[int | None] = mapped_column(Integer)  # NULL = never
    nudge_before_seconds: Mapped[int | None] = mapped_column(Integer)
    nudge_message: Mapped[str | None] = mapped_column(Text)
    closing_message: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TimeoutPolicyChange(Base):
    """Audit trail: who changed which scope when, old → new."""

    __tablename__ = "timeout_policy_changes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    old: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    new: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Event(Base):
    """What happened in a conversation, in commit order: the live streams' source and the
    event webhooks'. Written in the transaction that made the change, so a stream never
    shows what rolled back and never misses what committed; ``id`` is the stream's cursor.

    Messages are referred to by id, never copied: erasing a customer erases the text once.
    ``conversation_id`` is NULL only for ``customer.erased``, written after the erasure's
    cascade took the customer's conversations (and their events) away.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_conversation_id_id", "conversation_id", "id"),
        # Ids are cursors and webhook-ids: SQLite would hand the id of an erased last row to
        # the next one (customer.erased, right after the cascade), and receivers dedupe on it.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEndpoint(Base):
    """A receiver of event webhooks: where, which events, and the secrets that sign them."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500), default="")
    # Event types it wants; empty = every type of the catalogue (conversations/events.py).
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    service: Mapped[str | None] = mapped_column(String(64))  # None = every service
    secret: Mapped[str] = mapped_column(String(128))
    # After a rotation the old secret signs too, until it expires (receivers catch up).
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # First failed attempt since the last success: failing for WEBHOOK_DISABLE_AFTER disables.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event owed to one endpoint: the event outbox. Written in the transaction of the
    event itself, claimed and settled by the delivery workers like an outbox row."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
        # The sender and the redrive read what is due.
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        # Per endpoint, one conversation's events in order: "is an earlier one unsettled?"
        Index("ix_webhook_deliveries_order", "endpoint_id", "conversation_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    # The ordering key (no foreign key: the event's own cascades already remove the row).
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(16))  # pending, sending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Times an operator sent it again by hand: each allows one claim past the schedule.
    replays: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    redriven_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TurnRecord(Base):
    """What one committed turn ran: its agent and model, token usage and tool calls."""

    __tablename__ = "turn_records"
    __table_args__ = (
        # Written by the fenced commit: one per turn, however often the turn was retried.
        UniqueConstraint("conversation_id", "turn_number", name="uq_turn_records_turn"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    turn_number: Mapped[int] = mapped_column(Integer)
    agent: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(200))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    model_requests: Mapped[int] = mapped_column(Integer, default=0)
    tool_calls: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # The turn's journal folded in: each model response and tool result, and whether a
    # retry took it from the journal (``replayed``) instead of asking again.
    steps: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TurnStep(Base):
    """One finished step of a turn in flight: a model response or a tool result.

    Written as it happens, fenced on the turn's lease, so a retry of the turn (same
    conversation and turn number: its idempotency key) replays it instead of asking the model
    or running the tool again. ``call`` is 0 for the model response of ``step`` and k + 1 for
    the tool call in its part k. The commit folds them into ``turn_records.steps`` and
    deletes them: only turns in flight (or crashed) have rows here.
    """

    __tablename__ = "turn_steps"
    __table_args__ = (
        UniqueConstraint(
            "conversation_id", "turn_number", "step", "call", name="uq_turn_steps_position"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    turn_number: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    call: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))  # model | tool
    name: Mapped[str] = mapped_column(String(200))  # the model that answered, or the tool
    # Of what was asked: the model request, or the tool's name and arguments. A retry asking
    # for something else (a deploy changed the agent) starts the turn fresh.
    digest: Mapped[str] = mapped_column(String(64))
    # Pydantic AI's own message (ModelMessagesTypeAdapter): the ModelResponse, or a
    # ModelRequest holding the ToolReturnPart.
    message: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    record: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the tool call as recorded
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MemoryEntry(Base):
    """A piece of a customer's history kept for the retention window (summaries for now)."""

    __tablename__ = "memory_entries"
    __table_args__ = (
        Index("ix_memory_entries_customer_created", "customer_id", "created_at"),
        Index("ix_memory_entries_created", "created_at"),  # the retention purge
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))  # a memory.store.MemoryKind
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomerMerge(Base):
    """An explicit merge of one customer into another (never by guess), kept for audit."""

    __tablename__ = "customer_merges"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    into_customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    merged_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    actor: Mapped[str] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """The first answer to a request made with an ``Idempotency-Key`` header, per API key.

    The answer copies the customer's address and text, so the row belongs to what the request
    created: erasing that customer (or purging that conversation) deletes it, and the purge
    sweep deletes every row older than ``IDEMPOTENCY_KEY_TTL`` (``api/idempotency.py``).
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key", name="uq_idempotency_keys_owner_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(
            "customers.id", ondelete="CASCADE", name="fk_idempotency_keys_customer_id_customers"
        ),
        index=True,
    )
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(
            "conversations.id",
            ondelete="CASCADE",
            name="fk_idempotency_keys_conversation_id_conversations",
        ),
        index=True,
    )


class ErasedProviderId(Base):
    """A tombstone of an erased customer's inbound message: the SHA-256 of its channel and
    provider id (``conversations/tombstones.py``), never the id itself. A captured webhook
    replayed after the erasure is then a duplicate, not a new customer with a new reply."""

    __tablename__ = "erased_provider_ids"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookNonce(Base):
    """A signed webhook's one-time token (Mailgun's ``token``): seen once, refused after."""

    __tablename__ = "webhook_nonces"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    token: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # Exactly-once inbound: a retried webhook hits this and becomes a no-op.
        UniqueConstraint("channel", "provider_id", name="uq_messages_channel_provider_id"),
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        # (conversation_id, id): serves both the filter and the arrival order of a turn's batch.
        Index(
            "ix_messages_pending",
            "conversation_id",
            "id",
            postgresql_where=text("inbound_state = 'pending'"),
            sqlite_where=text("inbound_state = 'pending'"),
        ),
    )

    # Monotonic id = arrival order within a conversation.
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    direction: Mapped[str] = mapped_column(String(8))
    role: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))
    body: Mapped[str] = mapped_column(Text)
    media: Mapped[list[str]] = mapped_column(JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    provider_id: Mapped[str | None] = mapped_column(String(128))
    idempotency_token: Mapped[str | None] = mapped_column(String(128))
    inbound_state: Mapped[str | None] = mapped_column(String(16))
    turn: Mapped[int | None] = mapped_column(Integer)
    delivery_status: Mapped[str | None] = mapped_column(String(32))
    delivery_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxRow(Base):
    """A reply to send, written in the same transaction as the turn that produced it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), unique=True
    )
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    to_address: Mapped[str] = mapped_column(String(320))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sending_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    provider_id: Mapped[str | None] = mapped_column(String(128))
    via_sink: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the redrive last published a deliver/reconcile for it (scheduler/sweeps.py).
    redriven_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryEvent(Base):
    """Provider status callbacks, deduplicated on (provider id, status)."""

    __tablename__ = "delivery_events"
    __table_args__ = (
        UniqueConstraint("channel", "provider_id", "status", name="uq_delivery_events"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32))  # "partially_delivered" is 19
    error_code: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Predicates that must match the partial indexes above. Their value is rendered into the SQL
# text: with a bound parameter, SQLite cannot prove the index applies, and PostgreSQL stops
# using it once psycopg switches to a prepared statement's generic plan.
PENDING_MESSAGE = Message.inbound_state == literal("pending", literal_execute=True)
OPEN_CONVERSATION = Conversation.status != literal("finished", literal_execute=True)


class Operator(Base):
    """A person who signs in to the console (``dormouse operators add``). The password is kept
    only as an argon2id hash; changing it ends the operator's open sessions."""

    __tablename__ = "operators"
    __table_args__ = (UniqueConstraint("name", name="uq_operators_name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OperatorAction(Base):
    """What an operator did in the console, under their name (``operator:ada``).

    Ids only, never the customer's text or addresses: the row outlives an erasure (so no
    foreign keys) and must not keep what the erasure removed.
    """

    __tablename__ = "operator_actions"
    __table_args__ = (
        Index("ix_operator_actions_conversation_id", "conversation_id", "id"),
        Index("ix_operator_actions_customer_id", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OperatorSession(Base):
    """A signed-in console session. The cookie carries a random id; only its SHA-256 is kept,
    so a copy of this table signs no one in. Deleting the row ends the session at once:
    sign-out, "sign out everywhere", a new password and removal do."""

    __tablename__ = "operator_sessions"
    __table_args__ = (
        UniqueConstraint("token_hash", name="uq_operator_sessions_token_hash"),
        Index("ix_operator_sessions_operator_id", "operator_id"),
        Index("ix_operator_sessions_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SignInAttempts(Base):
    """Sign-in attempts counted in a fixed window per operator name and per client address.

    One row per (scope, key), incremented by one ``INSERT … ON CONFLICT DO UPDATE …
    RETURNING`` before the password is checked: thirty attempts at once get thirty distinct
    counts, so no more than the limit are ever checked."""

    __tablename__ = "sign_in_attempts"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)  # "name" | "address"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
