"""Webhook endpoints: create, read, change, rotate, delete; what a URL may be (the vetting
of its addresses is ``outbound_http``'s, done again at every post).

The secret is stored as is: signing needs it (an HMAC key cannot be hashed away). It is
answered once, when created or rotated; a rotation keeps the old one signing for
``ROTATION_OVERLAP`` so receivers switch without losing an event.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import SplitResult, urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from conversations import outbound_http
from conversations.errors import InvalidInput, NotFound
from conversations.events import WEBHOOK_TYPES
from conversations.models import WebhookEndpoint
from conversations.settings import Settings
from conversations.standard_webhooks import new_whsec

ROTATION_OVERLAP = timedelta(hours=24)


class EndpointNotFound(NotFound):
    pass


def check_url(url: str, settings: Settings, *, field: str = "url") -> str:
    """An http(s) URL, written strictly, whose host resolves, not to this API, and only to
    addresses ``outbound_http`` would send to. Every refusal is a 422 naming ``field``."""
    host, port = parse_url(url, field)
    loop = f"{field}: points at this API itself; events would loop back into it"
    public = urlsplit(settings.public_url)
    if host == (public.hostname or "").lower() and port == _port(public):
        raise InvalidInput(loop)
    try:
        addresses = outbound_http.resolve(host, port)
    except outbound_http.Unresolvable as exc:
        raise InvalidInput(f"{field}: {exc}") from None
    if _is_this_api(port, addresses, settings):
        raise InvalidInput(loop)
    allow = settings.allow_private_targets
    for address in addresses:
        why = outbound_http.refusal(address, allow_private=allow)
        if why is not None:
            raise InvalidInput(f"{field}: refused: {host!r} resolves to {address}, {why}")
    return url


def parse_url(url: str, field: str = "url") -> tuple[str, int]:
    """(host, port) of an absolute http(s) URL with no whitespace or control character in it
    (a tab or a newline in a URL breaks every post to it, and forges log lines)."""
    shown = repr(url[:80])
    bad = outbound_http.bad_character(url)
    if bad is not None:
        raise InvalidInput(f"{field}: {shown} contains {bad!r}: no whitespace or control character")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{field}: {shown} is not an http(s) URL")
    try:
        port = _port(parts)
        httpx.URL(url)  # what the sender will parse: IDNA, ports, characters
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidInput(f"{field}: {shown} is not a valid URL ({exc})") from None
    return parts.hostname.lower(), port


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _is_this_api(port: int, addresses: list[outbound_http.IPAddress], settings: Settings) -> bool:
    """Whether these addresses and port reach this API: PUBLIC_URL's host (resolved) and
    port, or PORT on an address of this machine (loopback, 0.0.0.0, one of its interfaces or
    host names), compared as addresses, not as strings (``2130706433`` is ``127.0.0.1``)."""
    public = urlsplit(settings.public_url)
    public_port = _port(public)
    if public.hostname and port == public_port:
        try:
            ours = outbound_http.resolve(public.hostname, public_port)
        except outbound_http.Unresolvable:
            ours = []
        if set(ours) & set(addresses):
            return True
    return port == settings.port and any(_this_machine(a) for a in addresses)


def _this_machine(address: outbound_http.IPAddress) -> bool:
    """Loopback, unspecified, or an address this machine can bind: one of its own."""
    inner = outbound_http.unwrapped(address)[-1]
    if inner.is_loopback or inner.is_unspecified:
        return True
    family = socket.AF_INET if inner.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(inner), 0))  # binds only to an address of this machine; sends nothing
    except OSError:
        return False
    return True


def check_types(event_types: list[str]) -> list[str]:
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
