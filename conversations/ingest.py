"""Ingest: one inbound message committed to the database, ready for a turn.

A webhook answers 2xx only after this unit of work commits; the wake-up that follows is a
hint, and the redrive sweep finds the message if that hint is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, Row, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conversations import events, statements
from conversations.channel_names import address_kind
from conversations.customers import customer_for, mark_undeliverable, set_opt_out
from conversations.db import transaction
from conversations.envelope import InboundMessage
from conversations.errors import ConcurrentChange
from conversations.lifecycle import finish, hold
from conversations.models import OPEN_CONVERSATION, Conversation, Identity, Message
from conversations.outbox import enqueue_reply
from conversations.spending import OverLimit
from conversations.statements import dialect_insert
from conversations.states import ConversationStatus, Direction, FinishReason, InboundState, Role
from conversations.timeout_store import Governed, deadline_values, load_policies
from conversations.timeouts import Policy, Scope
from conversations.tombstones import is_erased
from conversations.types import utcnow


@dataclass(frozen=True, slots=True)
class IngestResult:
    conversation_id: uuid.UUID | None  # None: an automatic message that concerns no one
    message_id: int | None
    duplicate: bool
    needs_turn: bool
    outbox_ids: tuple[int, ...] = ()
    finished: bool = False  # the message ended the conversation (opt-out): wrap it up
    held: bool = False  # stored for an operator: failed authentication, or over a limit


class NewConversationLimit(Protocol):
    """What a stranger opening a conversation may do (``spending.SpendingLimits``)."""

    def new_conversation(self, kind: str, address: str) -> OverLimit | None: ...


def ingest(
    session: Session,
    msg: InboundMessage,
    *,
    service: str,
    now: datetime,
    defaults: Mapping[str, Policy],
    help_text: str,
    route: Route | None = None,
    limits: NewConversationLimit | None = None,
) -> IngestResult:
    """Store ``msg`` in its customer's open conversation for ``service`` (opening one if none).
    ``route`` widens which open conversations it may continue (see ``Route``). A message to
    hold (``msg.hold``), or one that opens a conversation over ``limits``, is stored and its
    conversation held for an operator: no turn runs, nothing is sent.

    Idempotent on (channel, provider id): a redelivered webhook finds its message and changes
    nothing. The caller commits.
    """
    existing = _by_provider_id(session, msg.channel, msg.provider_id)
    if existing is not None:
        return _duplicate(existing)
    if is_erased(session, msg.channel, msg.provider_id):
        # A replay of an erased customer's message: a duplicate that concerns no one now.
        return IngestResult(None, None, duplicate=True, needs_turn=False)

    kind = address_kind(msg.channel)
    if msg.control == "no_reply":
        return _record_automatic(session, msg, kind=kind, now=now)
    customer_id, new_customer, opted_out = customer_for(session, kind, msg.sender, inbound=True)
    policies = load_policies(session)
    # A reply to one of this customer's messages continues that conversation, if still open.
    conversation: OpenConversation | None = _threaded(session, msg, customer_id)
    opened = False
    if conversation is None:
        # A customer created just now has no conversation yet: no need to look for one.
        conversation, opened = _open_or_start(
            session,
            msg,
            customer_id,
            service=service,
            now=now,
            policies=policies,
            defaults=defaults,
            look_first=not new_customer,
            route=route,
        )
    held = conversation.status in (ConversationStatus.HANDOFF, ConversationStatus.HELD)
    state = InboundState.HELD if held else InboundState.PENDING
    # An opted-out sender is never written to (until START), so no turn may answer them:
    # their message is kept for the record and the operator, and nothing runs.
    silent = opted_out and msg.control != "opt_in"
    if msg.control or silent:
        state = InboundState.DONE  # answered by the rules below, or by no one
    conn = session.connection()
    # ON CONFLICT DO NOTHING: a concurrent delivery of the same webhook that wins the unique
    # constraint leaves us no row, without aborting the transaction.
    message_id = conn.execute(
        statements.insert_message(conn.dialect.name),
        {
            "conversation_id": conversation.id,
            "direction": Direction.INBOUND,
            "role": Role.CUSTOMER,
            "channel": msg.channel,
            "address": msg.sender,
            "body": msg.text,
            "media": list(msg.media),
            "meta": dict(msg.metadata),
            "provider_id": msg.provider_id,
            "idempotency_token": msg.idempotency_token,
            "inbound_state": state,
            "created_at": now,
        },
    ).scalar()
    if message_id is None:
        existing = _by_provider_id(session, msg.channel, msg.provider_id)
        if opened or existing is None:
            # A concurrent copy of this webhook won: roll back, so no empty conversation is
            # left behind, and let the retry find its message.
            raise ConcurrentChange(f"message {msg.provider_id} was stored concurrently")
        return _duplicate(existing)

    if opened:
        events.record(session, conversation.id, events.STARTED, now, channel=msg.channel)
    events.message_events(session, conversation.id, [message_id], events.RECEIVED, now)
    if not opened:
        # The reply goes back on the channel the customer used last; the deadline moves.
        # (A conversation opened just now was inserted with these values.)
        conn.execute(
            statements.TOUCH_CONVERSATION,
            {
                "conversation_id": conversation.id,
                "channel": msg.channel,
                "address": msg.sender,
                "last_activity_at": now,
                "updated_at": now,
                **deadline_values(
                    conversation,
                    status=conversation.status,
                    last_activity=now,
                    policies=policies,
                    defaults=defaults,
                    channel=msg.channel,
                ),
            },
        )
    if msg.control:
        return _control(session, msg, conversation.id, message_id, now=now, help_text=help_text)
    over = limits.new_conversation(kind, msg.sender) if opened and limits is not None else None
    if msg.hold is not None:
        hold(session, conversation.id, reason=msg.hold, now=now)
        held = True
    elif over is not None:
        hold(session, conversation.id, reason=over.reason, now=now, limit=over.limit)
        held = True
    return IngestResult(
        conversation.id, message_id, duplicate=False, needs_turn=not (held or silent), held=held
    )


@dataclass(frozen=True, slots=True)
class Route:
    """Which open conversations a message that threads onto none may continue, when its
    address serves several services (one SMS number for every service without its own):
    the customer's most recently active among ``services`` (None: every service but
    ``excluded``). A new conversation is for the ``service`` ingest is given."""

    services: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()


class OpenConversation(Governed, Protocol):
    """What ingest reads of the conversation a message lands in."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...


@dataclass(frozen=True, slots=True)
class _Opened:
    id: uuid.UUID
    service: str
    channel: str
    status: str = ConversationStatus.SUSPENDED
    timeout_override_set: bool = False
    timeout_override_seconds: int | None = None


def _open_or_start(
    session: Session,
    msg: InboundMessage,
    customer_id: uuid.UUID,
    *,
    service: str,
    now: datetime,
    policies: Mapping[Scope, Policy],
    defaults: Mapping[str, Policy],
    look_first: bool,
    route: Route | None,
) -> tuple[OpenConversation, bool]:
    """The customer's open conversation for ``service`` (or on ``route``; locked), or a new
    one for ``service`` holding ``msg`` as its first activity; True if new."""
    conn = session.connection()
    # A lost race on the unique index means a concurrent first message opened one: read it.
    # (If that one was finished meanwhile, the next round inserts again.)
    lookup = (
        statements.OPEN_CONVERSATION_FOR_UPDATE
        if route is None
        else statements.open_conversation_on_route(route.services, route.excluded, service)
    )
    for _ in range(3):
        if look_first:
            found = conn.execute(lookup, {"customer_id": customer_id, "service": service}).first()
            if found is not None:
                return found, False
        opened = _Opened(uuid.uuid4(), service=service, channel=msg.channel)
        inserted = conn.execute(
            statements.insert_open_conversation(conn.dialect.name),
            {
                "id": opened.id,
                "customer_id": customer_id,
                "service": service,
                "channel": msg.channel,
                "address": msg.sender,
                "status": opened.status,
                "inbound_count": 1,
                "last_activity_at": now,
                "created_at": now,
                "updated_at": now,
                **deadline_values(
                    opened,
                    status=opened.status,
                    last_activity=now,
                    policies=policies,
                    defaults=defaults,
                ),
            },
        ).scalar()
        if inserted is not None:
            return opened, True
        look_first = True
    raise ConcurrentChange(f"cannot open a conversation for {customer_id}: it keeps conflicting")


def _record_automatic(
    session: Session, msg: InboundMessage, *, kind: str, now: datetime
) -> IngestResult:
    """An auto-reply or bounce: recorded on the conversation it concerns, never answered.

    It neither opens a conversation nor moves a deadline: an out-of-office reply must not
    keep a conversation open, and an unknown sender must not become a customer.
    """
    # Only a message we sent can be answered automatically, and only its recipient's mail
    # system speaks for it: an auto-reply from that address, or a report naming it. Anyone
    # else naming our Message-IDs reaches nothing and marks nothing.
    conversation_id = None
    reported: list[str] = []
    for sent_in, recipient in _our_messages(session, msg):
        if recipient in msg.undeliverable:
            reported.append(recipient)
        if conversation_id is None and (recipient == msg.sender or recipient in msg.undeliverable):
            conversation_id = sent_in
    mark_undeliverable(session, kind, reported, now)
    if conversation_id is None:
        known = session.scalar(
            select(Identity.customer_id).where(
                Identity.kind == kind, Identity.address == msg.sender
            )
        )
        found = _open_for(session, known, None) if known is not None else None
        conversation_id = found.id if found is not None else None
    if conversation_id is None:
        return IngestResult(None, None, duplicate=False, needs_turn=False)
    message_id = session.scalar(
        dialect_insert(session, Message)
        .values(
            conversation_id=conversation_id,
            direction=Direction.INBOUND,
            role=Role.SYSTEM,
            channel=msg.channel,
            address=msg.sender,
            body=msg.text,
            media=list(msg.media),
            meta=dict(msg.metadata),
            provider_id=msg.provider_id,
            idempotency_token=msg.idempotency_token,
            inbound_state=InboundState.IGNORED,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["channel", "provider_id"])
        .returning(Message.id)
    )
    return IngestResult(conversation_id, message_id, duplicate=message_id is None, needs_turn=False)


def _control(
    session: Session,
    msg: InboundMessage,
    conversation_id: uuid.UUID,
    message_id: int,
    *,
    now: datetime,
    help_text: str,
) -> IngestResult:
    """Opt-out, opt-in and help words: handled by rule, the same way on every channel."""
    kind = address_kind(msg.channel)
    if msg.control == "opt_out":
        set_opt_out(session, kind, msg.sender, now)
        finish(session, conversation_id, reason=FinishReason.OPT_OUT, now=now, answer_pending=False)
        return IngestResult(conversation_id, message_id, False, False, finished=True)
    if msg.control == "opt_in":
        set_opt_out(session, kind, msg.sender, None)
        return IngestResult(conversation_id, message_id, False, False)
    outbox_id = enqueue_reply(
        session,
        conversation_id=conversation_id,
        channel=msg.channel,
        to=msg.sender,
        text=help_text,
        role=Role.AGENT,
        turn=None,
        now=now,
    )
    return IngestResult(conversation_id, message_id, False, False, outbox_ids=(outbox_id,))


def insert_conversation(
    session: Session,
    customer_id: uuid.UUID,
    *,
    service: str,
    channel: str,
    address: str,
    now: datetime,
    **fields: Any,
) -> Conversation | None:
    """A new suspended conversation, or None if the customer already has one open for
    ``service`` (the partial unique index decides, under a savepoint)."""
    conversation = Conversation(
        customer_id=customer_id,
        service=service,
        channel=channel,
        address=address,
        status=ConversationStatus.SUSPENDED,
        last_activity_at=now,
        created_at=now,
        updated_at=now,
        **fields,
    )
    try:
        with session.begin_nested():
            session.add(conversation)
            session.flush()
    except IntegrityError:
        return None
    events.record(session, conversation.id, events.STARTED, now, channel=channel)
    return conversation


def ingest_committed(
    engine: Engine,
    msg: InboundMessage,
    *,
    service: str,
    defaults: Mapping[str, Policy],
    help_text: str,
    attempts: int = 3,
    before: Callable[[Session], None] | None = None,
    route: Route | None = None,
    limits: NewConversationLimit | None = None,
) -> IngestResult:
    """Run ``ingest`` as its own unit of work, retrying a lost race on a unique constraint.

    ``before`` runs first in the same transaction (a replay check that must commit, or roll
    back, with the message).
    """
    for attempt in range(attempts):
        try:
            with transaction(engine) as session:
                if before is not None:
                    before(session)
                return ingest(
                    session,
                    msg,
                    service=service,
                    now=utcnow(),
                    defaults=defaults,
                    help_text=help_text,
                    route=route,
                    limits=limits,
                )
        except (IntegrityError, ConcurrentChange):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _open_for(session: Session, customer_id: uuid.UUID, service: str | None) -> Conversation | None:
    """The customer's open conversation for ``service`` (None: for any service, newest)."""
    # FOR UPDATE: a turn that is finishing this conversation either commits first (then the
    # row no longer matches and a new conversation opens) or waits for our message and sees
    # it as a late arrival. Without the lock a message could land on a finished conversation.
    query = select(Conversation).where(Conversation.customer_id == customer_id, OPEN_CONVERSATION)
    if service is not None:
        query = query.where(Conversation.service == service)
    else:
        query = query.order_by(Conversation.last_activity_at.desc()).limit(1)
    return session.scalar(query.with_for_update())


def _threaded(session: Session, msg: InboundMessage, customer_id: uuid.UUID) -> Conversation | None:
    """The open conversation of the nearest earlier message ``msg`` replies to, if any.

    Only the sender's own conversations qualify (``customer_id``): a forwarded thread must
    not let a stranger into someone else's conversation.
    """
    if not msg.replies_to:
        return None
    query = (
        select(Conversation, Message.provider_id)
        .join(Message, Message.conversation_id == Conversation.id)
        .where(
            Message.channel == msg.channel,
            Message.provider_id.in_(msg.replies_to),
            Conversation.customer_id == customer_id,
            OPEN_CONVERSATION,
        )
    )
    # In id order: two ingests locking the same conversations take them in the same order.
    found = session.execute(query.order_by(Conversation.id).with_for_update(of=Conversation)).all()
    if not found:
        return None
    nearest = {provider_id: rank for rank, provider_id in enumerate(msg.replies_to)}
    conversation, _ = min(found, key=lambda row: nearest.get(row.provider_id, len(nearest)))
    return conversation


def is_stored(session: Session, msg: InboundMessage) -> bool:
    """Whether this message was ingested before (a retried webhook)."""
    return _by_provider_id(session, msg.channel, msg.provider_id) is not None


def _our_messages(session: Session, msg: InboundMessage) -> list[tuple[uuid.UUID, str]]:
    """(conversation id, recipient) of our messages that ``msg`` names, nearest first."""
    if not msg.replies_to:
        return []
    rows = session.execute(
        select(Message.conversation_id, Message.address, Message.provider_id).where(
            Message.channel == msg.channel,
            Message.provider_id.in_(msg.replies_to),
            Message.direction == Direction.OUTBOUND,
        )
    ).all()
    nearest = {provider_id: rank for rank, provider_id in enumerate(msg.replies_to)}
    rows = sorted(rows, key=lambda row: nearest.get(row.provider_id, len(nearest)))
    return [(row.conversation_id, row.address) for row in rows]


def _by_provider_id(session: Session, channel: str, provider_id: str) -> Row[Any, Any, Any] | None:
    """(id, conversation_id, inbound_state) of a stored message."""
    return (
        session.connection()
        .execute(
            statements.MESSAGE_BY_PROVIDER_ID, {"channel": channel, "provider_id": provider_id}
        )
        .first()
    )


def _duplicate(message: Row[Any, Any, Any]) -> IngestResult:
    return IngestResult(
        message.conversation_id,
        message.id,
        duplicate=True,
        needs_turn=message.inbound_state == InboundState.PENDING,
    )
