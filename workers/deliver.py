"""Deliver one outbox row, and reconcile rows whose send outcome is unknown.

Never knowingly twice: the row is ``sending`` before the provider call, and a send that may
have reached the provider is looked up there before it is ever tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from channels.base import Channel
from channels.devsink import sink_send
from channels.registry import get_channel
from conversations import events, log_context, outbox
from conversations.channel_names import address_kind
from conversations.customers import send_refusal, set_opt_out
from conversations.db import session_factory, transaction
from conversations.envelope import OutboundMessage, SendResult
from conversations.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from conversations.metrics import DELIVERIES
from conversations.settings import Settings
from conversations.spending import limits_for
from conversations.types import utcnow

log = logging.getLogger(__name__)


def deliver(
    outbox_id: int,
    *,
    engine: Engine,
    settings: Settings,
    clock: Callable[[], datetime] = utcnow,
) -> str:
    """Send a due pending row. Returns the row's status afterwards ("skipped" if not ours)."""
    with log_context.bound(outbox_id=outbox_id):
        channel, status = _deliver(outbox_id, engine, settings, clock)
    _count(channel, status)
    return status


def reconcile(
    outbox_id: int,
    *,
    engine: Engine,
    settings: Settings,
    clock: Callable[[], datetime] = utcnow,
) -> str:
    """Settle a row stuck in ``sending``: sent if the provider has it, else retry the send."""
    with log_context.bound(outbox_id=outbox_id):
        channel, status = _reconcile(outbox_id, engine, settings, clock)
    _count(channel, status)
    return status


# A row's status after an attempt → the outcome dormouse_deliveries_total counts.
OUTCOMES = {"sent": "sent", "failed": "failed", "pending": "retry", "sending": "ambiguous"}


def _count(channel: str | None, status: str) -> None:
    if channel is not None and status in OUTCOMES:  # "skipped": not ours, nothing was tried
        DELIVERIES.labels(channel, OUTCOMES[status]).inc()


def _deliver(
    outbox_id: int, engine: Engine, settings: Settings, clock: Callable[[], datetime]
) -> tuple[str | None, str]:
    with session_factory(engine)() as session:
        # The claim commits on its own, so its attempt counts even if what follows fails.
        with session.begin():
            row = outbox.claim_for_send(session, outbox_id, now=clock())
        if row is None:
            return None, "skipped"
        channel = get_channel(row.channel, settings)
        kind = address_kind(row.channel)
        with session.begin():
            refusal = send_refusal(session, kind, row.to_address)
            message = _outbound(session, row, channel)
    if refusal is not None:
        return row.channel, _fail(engine, row, refusal, clock)
    via_sink = not channel.can_send
    over = limits_for(settings).sms(row.to_address) if kind == "phone" else None
    if over is not None:
        # SMS pumping: a stranger's loop must not run up the bill of one number. Not sent,
        # never retried; the conversation's log says which limit.
        with transaction(engine) as session:
            outbox.mark_failed(session, row, error=over.reason, now=clock())
            events.record(
                session,
                row.conversation_id,
                events.LIMITED,
                clock(),
                reason=over.reason,
                limit=over.limit,
            )
        log.warning("outbox %s not sent: %s", row.id, over.reason)
        return row.channel, "failed"
    try:
        if via_sink:
            result = sink_send(message, channel.assigned_id(message))
        else:
            result = channel.send(message)
    except PermanentProviderError as exc:
        if exc.opted_out:
            with transaction(engine) as session:
                set_opt_out(session, kind, row.to_address, clock())
        return row.channel, _fail(engine, row, str(exc), clock)
    except TransientProviderError as exc:
        return row.channel, _retry_or_fail(engine, row, str(exc), settings, clock)
    except AmbiguousProviderError as exc:
        with transaction(engine) as session:
            outbox.mark_ambiguous(session, row, error=str(exc), now=clock())
        log.warning(
            "outbox %s: ambiguous send, will reconcile: %s", row.id, log_context.redact(str(exc))
        )
        return row.channel, "sending"
    _sent(engine, row, result, via_sink, clock)
    return row.channel, "sent"


def _reconcile(
    outbox_id: int, engine: Engine, settings: Settings, clock: Callable[[], datetime]
) -> tuple[str | None, str]:
    now = clock()
    # Never reconcile a send whose deliver task may still be running (it would resend).
    stale_before = now - timedelta(seconds=reconcile_after(settings))
    with transaction(engine) as session:
        row = outbox.claim_for_reconcile(session, outbox_id, stale_before=stale_before, now=now)
    if row is None:
        return None, "skipped"
    channel = get_channel(row.channel, settings)
    with session_factory(engine)() as session:
        message = _outbound(session, row, channel)
    if not channel.can_send or row.via_sink:
        _sent(engine, row, sink_send(message, channel.assigned_id(message)), True, clock)
        return row.channel, "sent"
    try:
        candidates = channel.find_sent(message, since=row.sending_started_at or row.created_at)
    except ProviderError as exc:
        log.warning(
            "outbox %s: reconcile lookup failed, will try again: %s",
            row.id,
            log_context.redact(str(exc)),
        )
        return row.channel, "sending"
    # Another row with the same text ("Thanks!") may own a candidate: never claim its id.
    with session_factory(engine)() as session:
        taken = outbox.provider_ids_taken(session, row.channel, [c.provider_id for c in candidates])
    found = next((c for c in candidates if c.provider_id not in taken), None)
    if found is not None:
        _sent(engine, row, found, False, clock)
        return row.channel, "sent"
    # Not found: Twilio never got it, so sending again cannot duplicate. (A channel that
    # cannot be asked, like SMTP, finds nothing and resends the same message: see its
    # find_sent.)
    error = row.last_error or "not found at provider"
    return row.channel, _retry_or_fail(engine, row, error, settings, clock)


def deliver_time_limit(settings: Settings) -> float:
    """Hard limit of one deliver task: at most a provider call and a lookup, with margin."""
    smtp = settings.smtp_timeout if settings.smtp_url else 0.0
    chat = settings.chat_http_timeout if settings.chat_callback_url else 0.0
    return 3 * max(settings.twilio_http_timeout, smtp, chat)


def reconcile_after(settings: Settings) -> float:
    return max(settings.delivery_reconcile_after, deliver_time_limit(settings) + 5)


def _outbound(session: Session, row: outbox.Claimed, channel: Channel) -> OutboundMessage:
    thread = outbox.thread_of(session, row) if channel.threads_replies else None
    return OutboundMessage(
        channel=row.channel,
        to=row.to_address,
        text=row.body,
        idempotency_key=str(row.idempotency_key),
        conversation_id=str(row.conversation_id),
        service=outbox.service_of(session, row),
        reply_to_id=thread.reply_to_id if thread else None,
        reply_to_meta=thread.reply_to_meta if thread else {},
        context=thread.context if thread else {},
    )


def _sent(
    engine: Engine,
    row: outbox.Claimed,
    result: SendResult,
    via_sink: bool,
    clock: Callable[[], datetime],
) -> None:
    # The message is out: recording it must not fail on a connection that died during the
    # send (a database restart; connections used a moment ago are not pinged, see db.py),
    # or reconcile would have to find it again. mark_sent is conditional, so once more is
    # harmless.
    for attempt in (1, 2):
        try:
            with transaction(engine) as session:
                outbox.mark_sent(
                    session,
                    row,
                    provider_id=result.provider_id,
                    delivery_status=result.status,
                    via_sink=via_sink,
                    now=clock(),
                )
            return
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
            log.warning("outbox %s: connection lost while recording the send; again", row.id)


def _fail(engine: Engine, row: outbox.Claimed, error: str, clock: Callable[[], datetime]) -> str:
    with transaction(engine) as session:
        outbox.mark_failed(session, row, error=error, now=clock())
    # The provider's words often name the recipient: the full error stays on the row only.
    log.error("outbox %s failed permanently: %s", row.id, log_context.redact(error))
    return "failed"


def _retry_or_fail(
    engine: Engine,
    row: outbox.Claimed,
    error: str,
    settings: Settings,
    clock: Callable[[], datetime],
) -> str:
    if row.attempts >= settings.delivery_max_attempts:
        return _fail(engine, row, f"gave up after {row.attempts} attempts: {error}", clock)
    now = clock()
    delay = outbox.backoff(row.attempts, base=settings.delivery_backoff_base)
    with transaction(engine) as session:
        outbox.mark_retry(session, row, error=error, next_attempt_at=now + delay, now=now)
    log.info(
        "outbox %s: transient failure, retry in %s: %s", row.id, delay, log_context.redact(error)
    )
    return "pending"
