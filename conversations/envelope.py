"""The one envelope every channel produces, and the one every channel sends.

Everything after a webhook handler is channel-blind: it sees these, never a provider's form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class InboundMessage:
    channel: str
    provider_id: str
    sender: str  # normalized: E.164 phone, lower-cased email, chat user id
    text: str
    recipient: str = ""
    media: tuple[str, ...] = ()
    idempotency_token: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Recognized by the channel: opt_out, opt_in, help (control words), or no_reply: an
    # automatic message (auto-reply, bounce) that is recorded and never answered.
    control: str | None = None
    # Provider ids of earlier messages this one answers, nearest first (threading).
    replies_to: tuple[str, ...] = ()
    # Addresses the provider reports as unable to receive (a bounce names them).
    undeliverable: tuple[str, ...] = ()
    # Why no turn may answer this before an operator releases its conversation (mail that
    # failed authentication): stored and shown, the conversation held.
    hold: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    channel: str
    to: str
    text: str
    idempotency_key: str
    conversation_id: str
    service: str = ""  # picks the sender where a service has its own (SMS_SERVICES)
    # The latest inbound message on this channel (its provider id and metadata), so a channel
    # can thread its reply; and the conversation's context from whoever started it.
    reply_to_id: str | None = None
    reply_to_meta: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_id: str
    status: str = "queued"


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """A provider's word on a message it was given (a status callback)."""

    provider_id: str
    status: str
    error_code: str | None = None
