"""Our outbound mail: threaded so mail clients show one conversation, marked automatic."""

from __future__ import annotations

import html
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from channels.mail.headers import MAX_REFERENCES
from channels.mail.text import one_line
from conversations.envelope import OutboundMessage


def reply_subject(message: OutboundMessage, sender: str) -> str:
    return one_line(_subject(message, sender)) or "(no subject)"


def _subject(message: OutboundMessage, sender: str) -> str:
    parent = one_line(str(message.reply_to_meta.get("subject") or ""))
    if parent:
        return parent if parent.lower().startswith("re:") else f"Re: {parent}"
    started = one_line(str(message.context.get("subject") or ""))
    if started:
        return started
    name, address = parseaddr(sender)
    return f"Message from {name or address.partition('@')[2] or 'us'}"


def compose(
    message: OutboundMessage, *, sender: str, message_id: str, now: datetime
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = reply_subject(message, sender)
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = f"<{message_id}>"
    parent = message.reply_to_meta.get("message_id")
    if parent:
        # RFC 5322 §3.6.4: the parent's References, else its In-Reply-To, then the parent.
        meta = message.reply_to_meta
        chain = [str(r) for r in meta.get("references") or filter(None, [meta.get("in_reply_to")])]
        mail["In-Reply-To"] = str(parent)
        mail["References"] = " ".join([*chain, str(parent)][-MAX_REFERENCES:])
    # RFC 3834: well-behaved auto-responders do not answer mail marked this way.
    mail["Auto-Submitted"] = "auto-replied" if parent else "auto-generated"
    mail.set_content(message.text)
    mail.add_alternative(to_html(message.text), subtype="html")
    return mail


def to_html(text: str) -> str:
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    body = "\n".join(
        "<p>" + html.escape(p.strip()).replace("\n", "<br>\n") + "</p>" for p in paragraphs
    )
    return f"<!doctype html>\n<html><body>\n{body}\n</body></html>\n"
