"""Raw RFC 5322 bytes → one ``InboundMessage``, or ``WebhookRejected(400)`` saying why not."""

from __future__ import annotations

import hashlib
import re
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr

from channels.mail import loops, text
from channels.mail.headers import MAX_REFERENCES, header
from channels.mail.structure import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PARTS, check_structure
from conversations.addresses import normalize_email
from conversations.envelope import InboundMessage
from conversations.errors import InvalidAddress, WebhookRejected

MAX_PROVIDER_ID = 128  # the width of messages.provider_id
# A Message-ID is printable and has no spaces; anything else in brackets is not one.
_MSG_ID = re.compile(r"<([^<>\s\x00-\x1f\x7f]{1,998})>")


def message_key(message_id: str) -> str:
    """The provider id stored for a Message-ID: without angle brackets, hashed if too long."""
    key = message_id.strip().strip("<>").strip()
    if len(key) > MAX_PROVIDER_ID:
        return "sha256:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
    return key


def parse_email(
    raw: bytes, *, max_parts: int = DEFAULT_MAX_PARTS, max_depth: int = DEFAULT_MAX_DEPTH
) -> InboundMessage:
    if not raw.strip():
        raise WebhookRejected(400, "not an email: the message is empty")
    # Before the parser: it costs CPU by the part, and the sender chooses how many.
    check_structure(raw.lstrip(b"\r\n"), max_parts=max_parts, max_depth=max_depth)
    try:
        # Blank lines before the header fields (a saved file, a relay's prefix) would make the
        # parser read an empty header block and the whole message as body.
        message = BytesParser(policy=policy.default).parsebytes(raw.lstrip(b"\r\n"))
    except Exception as exc:  # the parser is lenient; anything it still refuses is bad input
        raise WebhookRejected(400, f"not an email: {exc.__class__.__name__}") from None
    if not message.keys():
        raise WebhookRejected(400, "not an email: no header fields")
    sender = _sender(message)
    if sender is None:
        # Bounces often come from "MAILER-DAEMON <>": no address at all. Refused, a provider
        # would retry them for days; they are recorded (never answered) like any bounce.
        if not _from_a_mail_system(message):
            raise WebhookRejected(400, "not an email: no valid From address")
        sender = NO_ADDRESS

    message_id = header(message, "Message-ID")
    ids = _MSG_ID.findall(message_id)
    provider_id = (
        message_key(ids[0])
        if ids
        else "sha256:" + hashlib.sha256(raw).hexdigest()  # no Message-ID: a stable hash
    )
    references = _MSG_ID.findall(header(message, "References"))
    in_reply_to = _MSG_ID.findall(header(message, "In-Reply-To"))
    returned = [i for v in loops.returned_message_ids(message) for i in _MSG_ID.findall(v)]
    # Nearest first: the direct parent, then the thread from newest to oldest.
    nearest = [*in_reply_to, *reversed(references), *returned]
    replies_to = tuple(dict.fromkeys(message_key(i) for i in nearest))[:MAX_REFERENCES]

    automatic = loops.automatic_reason(message, sender)
    try:
        full = text.body_text(message)
        found_attachments = text.attachments(message)
    except Exception as exc:  # a part the email package cannot walk: refuse, store nothing
        raise WebhookRejected(400, f"unreadable MIME structure: {exc.__class__.__name__}") from None
    written = full if automatic else text.new_part(full)
    subject = text.one_line(header(message, "Subject"))
    to = _addresses(message, "To")
    metadata: dict[str, object] = {
        "subject": subject,
        "message_id": f"<{ids[0]}>" if ids else None,
        "references": [f"<{i}>" for i in references[-MAX_REFERENCES:]],
        "in_reply_to": f"<{in_reply_to[0]}>" if in_reply_to else None,
        "to": to,
        "cc": _addresses(message, "Cc"),
        "date": text.one_line(header(message, "Date"), 100) or None,
        "attachments": found_attachments,
    }
    if automatic:
        metadata["automatic"] = automatic
    if not written and not found_attachments and not automatic:
        written = subject  # a subject-only mail still says something
    return InboundMessage(
        channel="email",
        provider_id=provider_id,
        sender=sender,
        text=written,
        recipient=(to or [""])[0],
        metadata=metadata,
        control="no_reply" if automatic else None,
        replies_to=replies_to,
        undeliverable=tuple(loops.bounced_recipients(message)),
    )


def recipients(parsed: InboundMessage) -> list[str]:
    """Every address the mail was sent to, for choosing its service."""
    meta = parsed.metadata
    return [*meta.get("to", []), *meta.get("cc", [])]


# Stands for a mail system's empty sender; .invalid is reserved (RFC 2606), never a customer.
NO_ADDRESS = "mailer-daemon@sender.invalid"


def _from_a_mail_system(message: Message) -> bool:
    said = header(message, "From").lower()
    return (
        loops.automatic_reason(message, "") is not None
        or "mailer-daemon" in said
        or "postmaster" in said
        or "post_master" in said
    )


def _sender(message: Message) -> str | None:
    for name in ("From", "Sender", "Return-Path"):
        _, address = parseaddr(header(message, name))
        try:
            return normalize_email(address)
        except InvalidAddress:
            continue
    return None


def _addresses(message: Message, name: str) -> list[str]:
    try:
        pairs = getaddresses([header(message, name)])
    except (ValueError, IndexError, TypeError):
        return []
    return [a.lower() for _, a in pairs if "@" in a and a.isprintable() and len(a) <= 320][:20]
