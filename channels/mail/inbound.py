"""The inbound email webhook's request: who may post it, and where the raw MIME is in it.

Three shapes arrive at one endpoint: a raw message (``message/rfc822``), SendGrid Inbound
Parse in raw mode (form field ``email``) and a Mailgun route (form field ``body-mime``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qsl

from channels.mail.structure import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PARTS, check_structure
from conversations.errors import WebhookRejected

RAW_FIELDS = {"email": "sendgrid", "body-mime": "mailgun"}


@dataclass(frozen=True, slots=True)
class InboundPost:
    raw: bytes
    source: str  # raw | sendgrid | mailgun
    fields: dict[str, str]  # the form's other text fields (Mailgun's signature parts)


def check_secret(headers: Mapping[str, str], secret: str) -> None:
    """401 without credentials, 403 with wrong ones; compared in constant time."""
    header = headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    presented: str | None = None
    if scheme.lower() == "bearer":
        presented = value.strip()
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise WebhookRejected(
                401, "malformed basic credentials", {"WWW-Authenticate": "Basic"}
            ) from None
        presented = decoded.partition(":")[2]
    if not presented:
        raise WebhookRejected(
            401,
            "missing credentials: EMAIL_INBOUND_SECRET as basic password or bearer token",
            # Some clients send basic credentials from a URL only after this challenge.
            {"WWW-Authenticate": 'Basic realm="dormouse-email"'},
        )
    if not hmac.compare_digest(presented.encode(), secret.encode()):
        raise WebhookRejected(403, "wrong email inbound secret")


def read_post(
    content_type: str,
    body: bytes,
    *,
    max_parts: int = DEFAULT_MAX_PARTS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> InboundPost:
    """The raw MIME message inside a request body of one of the three known shapes; a form
    over the limits is refused (413, 400) before it is parsed, like a message."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "message/rfc822":
        return InboundPost(body, "raw", {})
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        # Mailgun posts url-encoded when the mail has no attachments, multipart otherwise.
        fields = (
            _form_fields(content_type, body, max_parts, max_depth)
            if kind == "multipart/form-data"
            else _urlencoded_fields(body)
        )
        for name, source in RAW_FIELDS.items():
            if name in fields:
                others = {
                    k: v.decode("utf-8", "replace")[:1000]
                    for k, v in fields.items()
                    if k not in RAW_FIELDS
                }
                return InboundPost(fields[name], source, others)
        raise WebhookRejected(
            400, "multipart post without an 'email' (SendGrid raw) or 'body-mime' (Mailgun) field"
        )
    raise WebhookRejected(415, "expected message/rfc822, or a form post from SendGrid or Mailgun")


def envelope_recipients(post: InboundPost) -> list[str]:
    """Who the mail was delivered to, as the service saw the SMTP envelope (Bcc included):
    SendGrid's ``envelope`` JSON, Mailgun's ``recipient``."""
    found: list[str] = []
    if post.source == "sendgrid":
        try:
            to = json.loads(post.fields.get("envelope") or "{}").get("to") or []
        except (ValueError, AttributeError, RecursionError):  # a malformed or too deep field
            to = []
        found = [str(a) for a in (to if isinstance(to, list) else [to])]
    elif post.source == "mailgun":
        found = post.fields.get("recipient", "").split(",")
    return [a.strip().lower() for a in found if "@" in a and a.strip().isprintable()][:20]


def verify_mailgun(fields: Mapping[str, str], signing_key: str, *, max_age: float) -> str:
    """Check Mailgun's HMAC over timestamp + token; returns the token, to be used only once."""
    timestamp, token, signature = (fields.get(k, "") for k in ("timestamp", "token", "signature"))
    if not (timestamp and token and signature):
        raise WebhookRejected(403, "Mailgun post without timestamp, token and signature")
    expected = hmac.new(
        signing_key.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower()):
        raise WebhookRejected(403, "Mailgun signature does not match MAILGUN_SIGNING_KEY")
    try:
        age = time.time() - float(timestamp)
    except ValueError:
        raise WebhookRejected(403, "Mailgun timestamp is not a number") from None
    if abs(age) > max_age:
        raise WebhookRejected(403, f"Mailgun timestamp is {age:.0f} s old: replay refused")
    if len(token) > 128:
        raise WebhookRejected(403, "Mailgun token is too long")
    return token


def _urlencoded_fields(body: bytes) -> dict[str, bytes]:
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=bool(body),
            encoding="latin-1",
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookRejected(400, f"malformed form body: {exc}") from None
    # Percent-decoded as Latin-1, one character per byte: encoding back gives the exact bytes.
    fields: dict[str, bytes] = {}
    for name, value in pairs:
        fields.setdefault(name, value.encode("latin-1"))
    return fields


def _form_fields(
    content_type: str, body: bytes, max_parts: int, max_depth: int
) -> dict[str, bytes]:
    # The email package parses multipart/form-data byte for byte: a raw message inside a
    # field keeps its exact bytes, whatever charset its own parts use.
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    # Its parser would build whatever structure a field declares, at the same cost a part.
    check_structure(head + body, max_parts=max_parts, max_depth=max_depth)
    try:
        form = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    except Exception:
        raise WebhookRejected(400, "malformed multipart body") from None
    if not form.is_multipart():
        raise WebhookRejected(400, "malformed multipart body: no parts (boundary missing?)")
    fields: dict[str, bytes] = {}
    for part in form.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or name in fields:
            continue
        payload = part.get_payload(decode=True)
        fields[name] = payload if isinstance(payload, bytes) else b""
    return fields
