"""Mail that must never be answered: auto-replies, bulk mail, bounces (no mail loops).

Each rule follows a published convention: RFC 3834 (Auto-Submitted), the Precedence header
of mailing lists and vacation programs, the X-Autoreply/X-Autorespond headers of common
auto-responders (and iCloud's X-Apple-Action: VACATION, which sends no Auto-Submitted), the
subject prefixes Exchange and iCloud give their auto-replies, the mailer-daemon and
postmaster senders of RFC 5321 (with the "post_master" spelling some carriers use, whose
bounces are plain multipart/mixed), and the multipart/report delivery status notifications
of RFC 3464.
"""

from __future__ import annotations

import re
from email.message import Message

from channels.mail.headers import header

NO_REPLY_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
# Matched against the local part up to any "+tag", and as prefixes ("noreply-billing").
NO_REPLY_SENDERS = (
    "mailer-daemon",
    "postmaster",
    "post_master",
    "mailer_daemon",
    "no-reply",
    "noreply",
    "no_reply",
    "do-not-reply",
    "donotreply",
    "do_not_reply",
)
_COMMENT = re.compile(r"\([^)]*\)")
# Vendor headers that mark an auto-reply, and the value that does (None: any value).
AUTO_REPLY_HEADERS: dict[str, str | None] = {
    "X-Autoreply": None,
    "X-Autorespond": None,
    "X-Apple-Action": "vacation",
}
# What Exchange/Outlook ("Automatic reply:") and iCloud ("Auto reply:") put before the
# subject of an auto-reply; a person's reply starts with "Re:".
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?reply|auto[ -]?response|out of (?:the )?office)\s*:",
    re.IGNORECASE,
)


def automatic_reason(message: Message, sender: str) -> str | None:
    """Why this mail is automatic (and must not be answered), or None for a person's mail."""
    # RFC 3834 allows comments and parameters: "no (a person wrote this)", "auto-replied; x=y".
    auto_submitted = _token(header(message, "Auto-Submitted"))
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    precedence = _token(header(message, "Precedence"))
    if precedence in NO_REPLY_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name, value in AUTO_REPLY_HEADERS.items():
        found = message.get(name)
        if found is not None and (value is None or _token(str(found)) == value):
            return f"{name} header"
    if _AUTO_REPLY_SUBJECT.match(header(message, "Subject")):
        return "auto-reply subject"
    if message.get_content_type() == "multipart/report":
        return "delivery status report"
    local_part = sender.partition("@")[0].lower().partition("+")[0]
    if local_part.startswith(NO_REPLY_SENDERS):
        return f"sent by {local_part}"
    # An empty envelope sender (RFC 5321 §4.5.5) is what bounces and auto-replies use so
    # that nothing answers them.
    if header(message, "Return-Path").strip() == "<>":
        return "null Return-Path"
    return None


def _token(value: str) -> str:
    words = _COMMENT.sub(" ", value).split(";")[0].split()
    return words[0].lower() if words else ""


def bounced_recipients(message: Message) -> list[str]:
    """Addresses a delivery status report says failed permanently (RFC 3464 Action: failed)."""
    if message.get_content_type() != "multipart/report":
        return []
    failed: list[str] = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, Message):
                continue
            if header(block, "Action").strip().lower() != "failed":
                continue
            recipient = header(block, "Final-Recipient") or header(block, "Original-Recipient")
            _, _, address = recipient.partition(";")
            address = address.strip().strip("<>").lower()
            if "@" in address and address.isprintable() and len(address) <= 320:
                failed.append(address)
    return failed[:20]


def returned_message_ids(message: Message) -> list[str]:
    """Message-IDs of the original mail a report returns (message/rfc822 or its headers)."""
    if message.get_content_type() != "multipart/report":
        return []
    found: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            original = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(original, Message):
                found.append(header(original, "Message-ID"))
        elif kind == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            for line in payload.decode("utf-8", "replace").splitlines():
                name, sep, value = line.partition(":")
                if sep and name.strip().lower() == "message-id":
                    found.append(value.strip())
    return [f for f in found if f]
