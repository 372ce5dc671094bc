"""One error tree. Retry policy is decided in one place from the class of the error, and the
HTTP answer in one handler (``api/app.py``) from ``http_status``: a route never maps errors
by hand, and an error that is not ours is a 500 that says nothing of its internals.
"""

from __future__ import annotations

import uuid


class DormouseError(Exception):
    """Root of every error Dormouse raises on purpose."""

    http_status = 500  # what the API answers if this escapes a route
    headers: dict[str, str] = {}

    def refers_to(self) -> dict[str, str]:
        """Ids of the records the refusal is about, answered beside its sentence."""
        return {}


class NotFound(DormouseError):
    http_status = 404


class Conflict(DormouseError):
    http_status = 409


class InvalidInput(DormouseError):
    http_status = 422


class BadRequest(DormouseError):
    http_status = 400


class UnsupportedMediaType(DormouseError):
    """A body of a content type the route does not take."""

    http_status = 415


class Unauthorized(DormouseError):
    http_status = 401
    headers = {"WWW-Authenticate": "Bearer"}


class ConfigurationError(DormouseError):
    """A setting that cannot work (a malformed URL, an unknown channel): fail at start-up."""


class WebhookRejected(DormouseError):
    """Inbound request refused; ``status`` is the HTTP answer (400, 403, 413, 422)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = self.http_status = status
        self.reason = reason
        self.headers = headers or {}


class InvalidAddress(InvalidInput):
    """An address that cannot be normalized (unparseable phone number, …)."""


class UnknownChannel(InvalidInput):
    """A channel name no registered channel answers to."""


class ConversationNotFound(NotFound):
    pass


class CustomerNotFound(NotFound):
    pass


class TransitionRefused(Conflict):
    """The conversation is not in a state that allows this; ``status`` is what it is in."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class Taken(Conflict):
    """Something unique belongs to another customer; the answer names the owner."""

    def __init__(self, message: str, owner: uuid.UUID) -> None:
        super().__init__(message)
        self.owner = owner

    def refers_to(self) -> dict[str, str]:
        return {"customer_id": str(self.owner)}


class AddressTaken(Taken):
    """The address belongs to another customer; linking it needs an explicit merge."""

    def __init__(self, kind: str, address: str, owner: uuid.UUID) -> None:
        super().__init__(
            f"{kind} {address} belongs to customer {owner}; to move it to another customer, "
            'POST /v1/customers/{id}/identities with "merge": true',
            owner,
        )


class ExternalIdTaken(Taken):
    def __init__(self, external_id: str, owner: uuid.UUID) -> None:
        super().__init__(f"external_id {external_id!r} belongs to customer {owner}", owner)


class TurnOverLimit(DormouseError):
    """The agent passed the turn's model request limit (``TURN_MAX_MODEL_REQUESTS``)."""


class ToolError(DormouseError):
    """A tool call the agent made could not run; the model is told why."""


class ProviderError(DormouseError):
    """A send failed at the provider."""

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientProviderError(ProviderError):
    """Certainly not sent; safe to retry after a backoff (connection refused, 429, …)."""


class PermanentProviderError(ProviderError):
    """Will never succeed (opted out, landline, invalid number): mark the row failed.

    ``opted_out``: the provider says the recipient opted out, so nothing more goes to them.
    """

    def __init__(
        self, message: str, code: int | str | None = None, *, opted_out: bool = False
    ) -> None:
        super().__init__(message, code)
        self.opted_out = opted_out


class AmbiguousProviderError(ProviderError):
    """The request may have reached the provider (timeout, 5xx): reconcile before resending."""


class LeaseLost(DormouseError):
    """The turn's lease was taken over: its commit is refused (fencing)."""


class ConcurrentChange(DormouseError):
    """A concurrent transaction changed what this unit of work read: roll back and run it
    again (the retry reads the other transaction's outcome)."""
