"""Webhook endpoints: create, read, change, rotate, delete; what a URL may be.

The secret is stored as is: signing needs it (an HMAC key cannot be hashed away). It is
answered once, when created or rotated; a rotation keeps the old one signing for
``ROTATION_OVERLAP`` so receivers switch without losing an event.
"""

from __future__ import annotations

import ipaddress
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from conversations.errors import InvalidInput, NotFound
from conversations.models import WebhookEndpoint
from conversations.settings import Settings, new_whsec

ROTATION_OVERLAP = timedelta(hours=24)


class EndpointNotFound(NotFound):
    pass


def check_url(url: str, settings: Settings) -> str:
    """An http(s) URL that is not this API; not on a private address if the settings say so.
    Every refusal is a 422 naming why."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"url: {url[:80]!r} is not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidInput(f"url: {url[:80]!r} has an invalid port") from None
    host = parts.hostname.lower()
    if _is_this_api(host, port, settings):
        raise InvalidInput("url: points at this API itself; events would loop back into it")
    if not settings.webhook_allow_private:
        private = private_address(host)
        if private is not None:
            raise InvalidInput(
                f"url: {host} is a private or loopback address ({private}), and "
                "WEBHOOK_ALLOW_PRIVATE is false"
            )
    return url


def _is_this_api(host: str, port: int, settings: Settings) -> bool:
    public = urlsplit(settings.public_url)
    public_port = public.port or (443 if public.scheme == "https" else 80)
    if public.hostname and host == public.hostname.lower() and port == public_port:
        return True
    return _loopback(host) and port == settings.port


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def private_address(host: str) -> str | None:
    """The first loopback, private, link-local or reserved address ``host`` names or
    resolves to, else None. A name that does not resolve is let through: the post fails and
    is retried, as for any receiver that is down."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            return None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if (
            address.is_loopback
            or address.is_private
            or address.is_link_local
            or address.is_reserved
            or address.is_unspecified
        ):
            return str(address)
    return None


def check_types(event_types: list[str]) -> list[str]:
    from conversations.events import WEBHOOK_TYPES

    unknown = [t for t in event_types if t not in WEBHOOK_TYPES]
    if unknown:
        raise InvalidInput(
            f"event_types: {', '.join(unknown)} not offered; choose from {', '.join(WEBHOOK_TYPES)}"
        )
    return list(dict.fromkeys(event_types))


@dataclass(frozen=True, slots=True)
class EndpointView:
    id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    service: str | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


def view(row: WebhookEndpoint) -> EndpointView:
    return EndpointView(
        id=row.id,
        url=row.url,
        description=row.description,
        event_types=list(row.event_types or []),
        service=row.service,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        disabled_at=row.disabled_at,
        failing_since=row.failing_since,
        previous_secret_expires_at=row.previous_secret_expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def create(
    session: Session,
    *,
    url: str,
    event_types: list[str],
    service: str | None,
    description: str,
    now: datetime,
) -> tuple[EndpointView, str]:
    """A new enabled endpoint and its secret (the only time the secret is answered)."""
    secret = new_whsec()
    row = WebhookEndpoint(
        url=url,
        event_types=event_types,
        service=service or None,
        description=description,
        secret=secret,
        enabled=True,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return view(row), secret


def get(session: Session, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    row = session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        raise EndpointNotFound(f"no webhook endpoint {endpoint_id}")
    return row


def list_all(session: Session) -> list[EndpointView]:
    rows = session.scalars(
        select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return [view(r) for r in rows]


def update(
    session: Session,
    endpoint_id: uuid.UUID,
    changes: dict[str, object],
    *,
    now: datetime,
) -> EndpointView:
    """Apply the given fields (url, event_types, service, description, enabled).
    Re-enabling clears the reason and the failure clock: its pending deliveries resume."""
    row = get(session, endpoint_id)
    for name in ("url", "event_types", "description"):
        if name in changes:
            setattr(row, name, changes[name])
    if "service" in changes:
        row.service = str(changes["service"]) if changes["service"] else None
    if "enabled" in changes:
        enabled = bool(changes["enabled"])
        if enabled and not row.enabled:
            row.disabled_reason = row.disabled_at = row.failing_since = None
        elif not enabled and row.enabled:
            row.disabled_reason, row.disabled_at = "disabled through the API", now
        row.enabled = enabled
    row.updated_at = now
    session.flush()
    return view(row)


def rotate(session: Session, endpoint_id: uuid.UUID, *, now: datetime) -> tuple[EndpointView, str]:
    """A new secret; the current one keeps signing beside it for ``ROTATION_OVERLAP``."""
    row = get(session, endpoint_id)
    row.previous_secret, row.secret = row.secret, new_whsec()
    row.previous_secret_expires_at = now + ROTATION_OVERLAP
    row.updated_at = now
    session.flush()
    return view(row), row.secret


def delete(session: Session, endpoint_id: uuid.UUID) -> None:
    session.delete(get(session, endpoint_id))  # its deliveries go with it (cascade)


def signing_secrets(row: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets an event is signed with now: the current one, and the previous one
    while its overlap lasts."""
    secrets = [row.secret]
    expires = row.previous_secret_expires_at
    if row.previous_secret and expires is not None and now < expires:
        secrets.append(row.previous_secret)
    return secrets
