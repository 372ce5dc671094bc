"""Mail that must never be answered: auto-replies, bulk mail, bounces (no mail loops).

Each rule follows a published convention: RFC 3834 (Auto-Submitted), the Precedence header
of mailing lists and vacation programs, the X-Autoreply/X-Autorespond headers of common
auto-responders (and iCloud's X-Apple-Action: VACATION, which sends no Auto-Submitted), the
subject prefixes Exchange and iCloud give their auto-replies, the mailer-daemon and
postmaster senders of RFC 5321 (with the "post_master" spelling some carriers use, whose
bounces are plain multipart/mixed), the multipart/report delivery status notifications
of RFC 3464, the loop headers helpdesks and list managers set (X-Loop), the header pair an
Exchange inbox rule's copy carries, and a vendor's notification: List-Unsubscribe (RFC 2369)
beside an email service provider's own header. Every occurrence of a header is read.
"""

from __future__ import annotations

import re
from email.message import Message

from channels.mail.headers import every, header

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
_COMMA = re.compile(r"\s*,\s*")
# Set by mail software on what it sends or relays so that nothing answers it again: X-Loop
# (procmail, helpdesks, list managers), Request Tracker's RT-Loop-Prevention.
LOOP_HEADERS = ("X-Loop", "RT-Loop-Prevention")
# What an email service provider adds to the notifications it sends for businesses: Gmail's
# feedback-loop id (every large sender sets it), Amazon SES, SendGrid, Mailchimp/Mandrill.
# With a List-Unsubscribe beside one, the mail is a vendor's bulk notification even when it
# says nothing of Auto-Submitted; a person's reply carries neither.
BULK_SENDER_HEADERS = ("Feedback-ID", "X-SES-Outgoing", "X-SG-EID", "X-MC-User")
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
    """Why this mail is automatic (and must not be answered), or None for a person's mail.

    Every occurrence of a header counts, not the first only: a second ``Precedence: bulk``
    below a first ``Precedence: normal`` is still bulk mail.
    """
    # RFC 3834 allows comments and parameters: "no (a person wrote this)", "auto-replied; x=y".
    for auto_submitted in _tokens(message, "Auto-Submitted"):
        if auto_submitted and auto_submitted != "no":
            return f"Auto-Submitted: {auto_submitted}"
    for precedence in _tokens(message, "Precedence"):
        if precedence in NO_REPLY_PRECEDENCE:
            return f"Precedence: {precedence}"
    for name, value in AUTO_REPLY_HEADERS.items():
        if any(value is None or _token(found) == value for found in every(message, name)):
            return f"{name} header"
    loop = _present(message, LOOP_HEADERS)
    if loop:
        return f"{loop} header"
    if _present(message, ("X-MS-Exchange-Inbox-Rules-Loop",)) and any(
        "all" in _COMMA.split(v.lower()) for v in every(message, "X-Auto-Response-Suppress")
    ):
        return "Exchange inbox rule (X-Auto-Response-Suppress: All)"
    bulk_sender = _present(message, BULK_SENDER_HEADERS)
    if bulk_sender and _present(message, ("List-Unsubscribe",)):
        return f"bulk mail (List-Unsubscribe, {bulk_sender})"
    if any(_AUTO_REPLY_SUBJECT.match(subject) for subject in every(message, "Subject")):
        return "auto-reply subject"
    if message.get_content_type() == "multipart/report":
        return "delivery status report"
    local_part = sender.partition("@")[0].lower().partition("+")[0]
    if local_part.startswith(NO_REPLY_SENDERS):
        return f"sent by {local_part}"
    # An empty envelope sender (RFC 5321 §4.5.5) is what bounces and auto-replies use so
    # that nothing answers them.
    if any(path.strip() == "<>" for path in every(message, "Return-Path")):
        return "null Return-Path"
    return None


def _present(message: Message, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` the message carries (with any value), or None."""
    return next((name for name in names if every(message, name)), None)


def _tokens(message: Message, name: str) -> list[str]:
    return [_token(value) for value in every(message, name)]


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
