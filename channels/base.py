"""What a channel is: verify and parse its webhook, send one message, shape text for its medium."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime

from conversations.envelope import InboundMessage, OutboundMessage, SendResult


class Channel(ABC):
    name: str

    @abstractmethod
    def verify(self, url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> None:
        """Raise ``WebhookRejected(403, …)`` unless the request really comes from the provider."""

    @abstractmethod
    def parse(self, params: Mapping[str, str], headers: Mapping[str, str]) -> InboundMessage:
        """Turn a verified webhook into the envelope, or raise ``WebhookRejected(400, …)``."""

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
