"""One error tree. Retry policy is decided in one place from the class of the error."""

from __future__ import annotations


class DormouseError(Exception):
    """Root of every error Dormouse raises on purpose."""


class WebhookRejected(DormouseError):
    """Inbound request refused; ``status`` is the HTTP answer (400, 403, 413, 422)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


class InvalidAddress(DormouseError):
    """An address that cannot be normalized (unparseable phone number, …)."""


class ProviderError(DormouseError):
    """A send failed at the provider."""

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientProviderError(ProviderError):
    """Certainly not sent; safe to retry after a backoff (connection refused, 429, …)."""


class PermanentProviderError(ProviderError):
    """Will never succeed (opted out, landline, invalid number): mark the row failed."""


class AmbiguousProviderError(ProviderError):
    """The request may have reached the provider (timeout, 5xx): reconcile before resending."""


class LeaseLost(DormouseError):
    """The turn's lease was taken over: its commit is refused (fencing)."""


class ConcurrentChange(DormouseError):
    """A concurrent transaction changed what this unit of work read: roll back and run it
    again (the retry reads the other transaction's outcome)."""
