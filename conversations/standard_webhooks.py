"""Standard Webhooks (standardwebhooks.com), the one home of its signing: verify what a chat
platform posts us, sign what we post back to it and every event webhook, make and check the
``whsec_`` secrets. The HMAC itself is the ``standardwebhooks`` package's.

Its ``verify`` raises one ``WebhookVerificationError`` for every failure, told apart only by
its message, and lets a malformed signature header escape as a ``ValueError``. So the
timestamp is checked here first, with the same 5-minute tolerance: a sender whose clock is
off, or a replay, is told so in words of ours, whatever the library says in a later version.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets as random_bytes
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook, WebhookVerificationError

from conversations.errors import WebhookRejected

TOLERANCE_SECONDS = 300  # the library's, fixed there: a replay window of five minutes
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
MAX_HEADER = 1024  # a longer signature header is no sender's: refused before any HMAC


def missing_headers(headers: Mapping[str, str]) -> list[str]:
    return [name for name in HEADERS if not headers.get(name)]


def verify(secret: str, body: bytes, headers: Mapping[str, str], now: float | None = None) -> str:
    """Check ``body``'s signature; returns the webhook-id. Every refusal is a 403 naming why."""
    missing = missing_headers(headers)
    if missing:
        raise WebhookRejected(403, f"missing Standard Webhooks header(s): {', '.join(missing)}")
    webhook_id, stamp, signature = (headers[name] for name in HEADERS)
    if any(len(value) > MAX_HEADER for value in (webhook_id, stamp, signature)):
        raise WebhookRejected(403, "a webhook-* header is too long")
    try:
        sent_at = float(stamp)
    except ValueError:
        sent_at = math.nan
    if not math.isfinite(sent_at):
        raise WebhookRejected(403, "webhook-timestamp is not a Unix time in seconds")
    skew = (time.time() if now is None else now) - sent_at
    if abs(skew) > TOLERANCE_SECONDS:
        when = f"{skew:.0f} s old" if skew > 0 else f"{-skew:.0f} s in the future"
        raise WebhookRejected(
            403,
            f"webhook-timestamp is {when}, outside the {TOLERANCE_SECONDS // 60}-minute "
            "tolerance: a replay, or the sender's clock is off",
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        # What was signed is text (Standard Webhooks signs "{id}.{timestamp}.{body}").
        raise WebhookRejected(400, "the body is not UTF-8 JSON") from None
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError as exc:
        if "timestamp" in str(exc):  # crossed the tolerance between our check and its own
            raise WebhookRejected(403, f"webhook-timestamp refused: {exc}") from None
        raise WebhookRejected(
            403, "webhook-signature does not match this body with CHAT_WEBHOOK_SECRET"
        ) from None
    except ValueError:  # "v1" without a comma, or a signature that is not base64
        raise WebhookRejected(
            403, "webhook-signature is malformed: expected 'v1,<base64 HMAC-SHA256>'"
        ) from None
    return webhook_id


def sign(
    secrets: str | Sequence[str], webhook_id: str, body: str, now: float | None = None
) -> dict[str, str]:
    """The three headers that sign ``body`` as sent now; with two secrets (a rotation) both
    signatures, space separated, so a receiver holding either verifies."""
    stamp = math.floor(time.time() if now is None else now)
    when = datetime.fromtimestamp(stamp, UTC)
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": " ".join(Webhook(key).sign(webhook_id, when, body) for key in keys),
    }


WHSEC_PREFIX = "whsec_"
# Standard Webhooks asks for secrets of 24 to 64 random bytes.
WHSEC_BYTES = (24, 64)


def new_whsec() -> str:
    return WHSEC_PREFIX + base64.b64encode(random_bytes.token_bytes(24)).decode()


def check_whsec(value: str, name: str = "CHAT_WEBHOOK_SECRET") -> None:
    """Refuse a secret Standard Webhooks would not take. Its library decodes base64 leniently
    (ignoring stray characters), so a typo would otherwise become a different key quietly."""
    if not value.startswith(WHSEC_PREFIX):
        raise ValueError(f"{name} must start with {WHSEC_PREFIX!r} (Standard Webhooks)")
    try:
        key = base64.b64decode(value[len(WHSEC_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name}: the part after 'whsec_' is not base64") from None
    low, high = WHSEC_BYTES
    if not low <= len(key) <= high:
        raise ValueError(f"{name}: {len(key)} bytes; use {low} to {high} random bytes")
