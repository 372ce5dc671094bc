"""Email out over SMTP with aiosmtplib; the dev sink when ``SMTP_URL`` is unset."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from email import policy
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import parseaddr
from urllib.parse import unquote, urlsplit

import aiosmtplib

from channels.base import Channel
from channels.mail.compose import compose
from channels.mail.text import tidy
from conversations.envelope import OutboundMessage, SendResult
from conversations.errors import (
    AmbiguousProviderError,
    ConfigurationError,
    PermanentProviderError,
    TransientProviderError,
)
from conversations.settings import Settings
from conversations.types import utcnow

log = logging.getLogger(__name__)

MAX_EMAIL_TEXT = 20_000
# scheme → (implicit TLS, STARTTLS: True required, None if offered, default port)
SCHEMES = {
    "smtp": (False, None, 25),
    "smtp+starttls": (False, True, 587),
    "smtps": (True, False, 465),
}


def smtp_options(url: str) -> dict[str, object]:
    """``smtp://user:pass@host:port`` → aiosmtplib.SMTP keyword arguments."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(f"SMTP_URL: scheme must be one of {', '.join(SCHEMES)}")
    if not parts.hostname:
        raise ConfigurationError("SMTP_URL: no host")
    use_tls, start_tls, default_port = SCHEMES[parts.scheme]
    return {
        "hostname": parts.hostname,
        "port": parts.port or default_port,
        "use_tls": use_tls,
        "start_tls": start_tls,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }


class EmailChannel(Channel):
    name = "email"
    threads_replies = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sender = settings.email_from
        self.sender_address = parseaddr(settings.email_from)[1]
        self.domain = self.sender_address.partition("@")[2] or "localhost"
        self.smtp = smtp_options(settings.smtp_url) if settings.smtp_url else None

    @property
    def can_send(self) -> bool:
        return self.smtp is not None

    def assigned_id(self, message: OutboundMessage) -> str:
        # Derived from the outbox row's key: a resend after an ambiguous failure carries the
        # same Message-ID, which is how a receiving mailbox recognizes the copy.
        return f"{message.idempotency_key}@{self.domain}"

    def compose(self, message: OutboundMessage, now: datetime | None = None) -> EmailMessage:
        return compose(
            message, sender=self.sender, message_id=self.assigned_id(message), now=now or utcnow()
        )

    def send(self, message: OutboundMessage) -> SendResult:
        if self.smtp is None:
            raise PermanentProviderError("SMTP_URL is not set")
        try:
            # Written out before connecting: a header the email package refuses to write
            # (a control character, an unfoldable address) is never going to be sent.
            data = self.compose(message).as_bytes(policy=policy.SMTP)
        except (ValueError, TypeError, MessageError) as exc:  # UnicodeError is a ValueError
            raise PermanentProviderError(f"cannot compose the mail: {exc}") from None
        asyncio.run(self._transmit(data, message.to))
        return SendResult(provider_id=self.assigned_id(message), status="sent")

    def find_sent(self, message: OutboundMessage, since: datetime) -> list[SendResult]:
        # SMTP cannot be asked what it accepted. Reconcile then sends again, with the same
        # Message-ID (see assigned_id): what every MTA does when the answer to the end of
        # DATA is lost (RFC 1047): a recognizable duplicate rather than a lost reply.
        return []

    def shape(self, text: str) -> str:
        return tidy(text)[:MAX_EMAIL_TEXT]

    async def _transmit(self, data: bytes, to: str) -> None:
        assert self.smtp is not None
        timeout = self.settings.smtp_timeout
        client = aiosmtplib.SMTP(timeout=timeout, **self.smtp)  # type: ignore[arg-type]
        try:
            await client.connect()  # greeting, EHLO, STARTTLS and login
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise TransientProviderError(f"SMTP login refused: {exc}", exc.code) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            raise TransientProviderError(f"SMTP connection failed: {exc}") from None
        try:
            await _envelope(client, self.sender_address, to)
            try:
                await client.data(data)
            except aiosmtplib.SMTPResponseException as exc:
                raise _refused(exc) from None
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                # The message may have been accepted before the answer was lost.
                raise AmbiguousProviderError(f"no answer to end of DATA: {exc}") from None
        finally:
            try:
                await client.quit()
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                client.close()


async def _envelope(client: aiosmtplib.SMTP, sender: str, to: str) -> None:
    """MAIL FROM and RCPT TO: a failure here means the message was certainly not sent."""
    try:
        await client.mail(sender)
        await client.rcpt(to)
    except aiosmtplib.SMTPResponseException as exc:
        raise _refused(exc) from None
    except UnicodeError:
        # aiosmtplib writes the envelope in ASCII unless asked for SMTPUTF8 (RFC 6531),
        # which we do not: a non-ASCII address cannot be given to this server, ever.
        raise PermanentProviderError(
            "SMTP cannot address this recipient: not ASCII (SMTPUTF8 is not used)"
        ) from None
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        raise TransientProviderError(f"SMTP envelope failed: {exc}") from None


def _refused(exc: aiosmtplib.SMTPResponseException) -> Exception:
    if 500 <= exc.code < 600:
        return PermanentProviderError(f"SMTP {exc.code}: {exc.message}", exc.code)
    return TransientProviderError(f"SMTP {exc.code}: {exc.message}", exc.code)
