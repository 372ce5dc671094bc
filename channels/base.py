"""What a channel is: send one message, look for a send that may have happened, shape text.

Each channel also verifies and parses its own inbound webhook into one ``InboundMessage``;
those signatures differ by medium (a Twilio form, a raw MIME message), so they are not here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from conversations.envelope import OutboundMessage, SendResult


class Channel(ABC):
    name: str
    # True if ``send`` needs the latest inbound message and the conversation's context
    # (``OutboundMessage.reply_to_*``): deliver reads them only for such channels.
    threads_replies: bool = False

    @property
    @abstractmethod
    def can_send(self) -> bool:
        """False without provider credentials: replies then go to the dev sink."""

    @abstractmethod
    def send(self, message: OutboundMessage) -> SendResult:
        """Send; raise a Transient/Permanent/Ambiguous ``ProviderError`` on failure."""

    @abstractmethod
    def find_sent(self, message: OutboundMessage, since: datetime) -> list[SendResult]:
        """Messages at the provider that may be this ambiguous send: same recipient and text,
        created since ``since``, newest first (reconcile looks before it ever resends)."""

    @abstractmethod
    def shape(self, text: str) -> str:
        """Fit the agent's text to the medium (length, markup)."""

    def assigned_id(self, message: OutboundMessage) -> str | None:
        """The provider id this channel gives a message before sending it, if it chooses one
        (email's Message-ID). The dev sink records it too, so threading works without SMTP."""
        return None
