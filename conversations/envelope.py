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
    # A channel's control word, already recognized by the channel: opt_out, opt_in or help.
    control: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    channel: str
    to: str
    text: str
    idempotency_key: str
    conversation_id: str


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_id: str
    status: str = "queued"
