"""SMS through Twilio: signed form webhooks in, the twilio SDK's Messages API out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from urllib3.exceptions import MaxRetryError, NewConnectionError

from channels.base import Channel
from conversations.addresses import normalize_phone
from conversations.envelope import DeliveryUpdate, InboundMessage, OutboundMessage, SendResult
from conversations.errors import (
    AmbiguousProviderError,
    InvalidAddress,
    PermanentProviderError,
    TransientProviderError,
    WebhookRejected,
)
from conversations.ingest import Route
from conversations.settings import Settings

TWILIO_API_BASE = "https://api.twilio.com"
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"

OPTED_OUT_CODE = 21610  # the recipient replied STOP
# Twilio error codes that no retry will fix.
PERMANENT_ERROR_CODES = {
    21211,  # invalid 'To' number
    21408,  # region not enabled
    21610,  # recipient replied STOP: opted out
    21612,  # cannot route to this number
    21614,  # not a mobile number
    30006,  # landline or unreachable carrier
    30007,  # carrier filtered as spam
}

MAX_BODY_CHARS = 1600  # Twilio refuses longer bodies
CLOCK_SKEW = timedelta(seconds=5)

# Twilio's default opt-out handling words; alone in a message, in any case.
OPT_OUT_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
OPT_IN_WORDS = {"START", "YES", "UNSTOP"}
HELP_WORDS = {"HELP", "INFO"}


def control_word(text: str) -> str | None:
    word = text.strip().strip(".!").upper()
    if word in OPT_OUT_WORDS:
        return "opt_out"
    if word in OPT_IN_WORDS:
        return "opt_in"
    if word in HELP_WORDS:
        return "help"
    return None


class _RebasedHttpClient(TwilioHttpClient):
    """Sends the SDK's requests to ``TWILIO_API_URL`` (a Twilio-compatible gateway, or tests)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API_BASE):
            url = self._base_url + url[len(TWILIO_API_BASE) :]
        return super().request(method, url, *args, **kwargs)


class SmsChannel(Channel):
    name = "sms"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # --- inbound -------------------------------------------------------------------------

    def verify(self, url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> None:
        signature = headers.get("x-twilio-signature", "")
        if not signature:
            raise WebhookRejected(403, "missing X-Twilio-Signature header")
        validator = RequestValidator(self.settings.webhook_auth_token())
        if not validator.validate(url, dict(params), signature):
            raise WebhookRejected(403, "X-Twilio-Signature does not match this request")

    def parse(self, params: Mapping[str, str], headers: Mapping[str, str]) -> InboundMessage:
        sid = params.get("MessageSid") or params.get("SmsSid")
        missing = [n for n, v in (("MessageSid", sid), ("From", params.get("From"))) if not v]
        if "Body" not in params:
            missing.append("Body")
        if missing:
            raise WebhookRejected(400, f"missing form field(s): {', '.join(missing)}")
        try:
            sender = normalize_phone(
                params["From"], self.settings.default_region, must_be_valid=False
            )
        except InvalidAddress as exc:
            raise WebhookRejected(400, f"From: {exc}") from None
        try:
            num_media = int(params.get("NumMedia") or 0)
        except ValueError:
            raise WebhookRejected(400, "NumMedia is not a number") from None
        media = tuple(
            params[f"MediaUrl{i}"] for i in range(min(num_media, 10)) if params.get(f"MediaUrl{i}")
        )
        return InboundMessage(
            channel=self.name,
            provider_id=str(sid),
            sender=sender,
            recipient=params.get("To", ""),
            text=params["Body"],
            media=media,
            idempotency_token=headers.get("i-twilio-idempotency-token"),
            metadata={k: params[k] for k in ("FromCountry", "To") if params.get(k)},
            control=control_word(params["Body"]),
        )

    def parse_status(self, params: Mapping[str, str]) -> DeliveryUpdate:
        """A status callback's form: which message, what status, which error code."""
        sid, status = params.get("MessageSid"), params.get("MessageStatus")
        if not sid or not status:
            raise WebhookRejected(400, "missing form field(s): MessageSid and MessageStatus")
        error_code = params.get("ErrorCode") or None
        if len(sid) > 128 or len(status) > 32 or len(error_code or "") > 16:
            raise WebhookRejected(400, "MessageSid, MessageStatus or ErrorCode is too long")
        return DeliveryUpdate(provider_id=sid, status=status, error_code=error_code)

    # --- outbound ------------------------------------------------------------------------

    @property
    def can_send(self) -> bool:
        return self.settings.twilio_configured and bool(
            self.settings.twilio_from_number or self.settings.twilio_messaging_service_sid
        )

    @cached_property
    def client(self) -> Client:
        s = self.settings
        http = _RebasedHttpClient(s.twilio_api_url or TWILIO_API_BASE, s.twilio_http_timeout)
        return Client(s.twilio_account_sid, s.twilio_auth_token, http_client=http)

    def _own_number(self, message: OutboundMessage) -> str | None:
        """The number the message's service sends from (``SMS_SERVICES``), if it has one."""
        return self.settings.sms_number_for(message.service) if message.service else None

    def send(self, message: OutboundMessage) -> SendResult:
        s = self.settings
        own = self._own_number(message)
        sender: dict[str, str] = (
            {"from_": own}
            if own
            else {"messaging_service_sid": s.twilio_messaging_service_sid}
            if s.twilio_messaging_service_sid
            else {"from_": s.twilio_from_number}
        )
        try:
            sent = self.client.messages.create(
                to=message.to,
                body=message.text,
                status_callback=s.public_url.rstrip("/") + STATUS_CALLBACK_PATH,
                **sender,
            )
        except TwilioRestException as exc:
            raise _classify_rest_error(exc) from exc
        except requests.RequestException as exc:
            raise _classify_transport_error(exc) from exc
        return SendResult(provider_id=str(sent.sid), status=str(sent.status or "queued"))

    def find_sent(self, message: OutboundMessage, since: datetime) -> list[SendResult]:
        s = self.settings
        try:
            # Not filtered on DateSent: a message Twilio accepted but still queues has none.
            # With a messaging service Twilio picks the sender: only the recipient is known.
            sender = self._own_number(message) or (
                None if s.twilio_messaging_service_sid else (s.twilio_from_number or None)
            )
            recent = self.client.messages.list(to=message.to, from_=sender, limit=50)
        except TwilioRestException as exc:
            raise _classify_rest_error(exc) from exc
        except requests.RequestException as exc:
            raise TransientProviderError(f"lookup failed: {exc}") from exc
        # A little slack for clock skew between us and Twilio, never minutes of it.
        earliest = since - CLOCK_SKEW
        return [
            SendResult(provider_id=str(c.sid), status=str(c.status))
            for c in recent
            if (c.body or "") == message.text
            and (c.date_created is None or c.date_created >= earliest)
        ]

    def shape(self, text: str) -> str:
        return shape_sms(text)


def shape_sms(text: str, limit: int = MAX_BODY_CHARS) -> str:
    """Plain text for a phone: no markdown emphasis, no runs of blank lines, within the limit."""
    text = re.sub(r"(\*\*|__|`)", "", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _classify_rest_error(exc: TwilioRestException) -> Exception:
    detail = f"Twilio {exc.status} error {exc.code}: {exc.msg}"
    if exc.code in PERMANENT_ERROR_CODES:
        return PermanentProviderError(detail, exc.code, opted_out=exc.code == OPTED_OUT_CODE)
    if exc.status == 429:
        return TransientProviderError(detail, exc.code)
    if exc.status >= 500:
        # The request reached Twilio; it may have queued the message before failing.
        return AmbiguousProviderError(detail, exc.code)
    return PermanentProviderError(detail, exc.code)


def _classify_transport_error(exc: requests.RequestException) -> Exception:
    if isinstance(exc, requests.ConnectTimeout):
        return TransientProviderError(f"connect timeout: {exc}")
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError) and isinstance(reason.reason, NewConnectionError):
            return TransientProviderError(f"connection refused: {exc}")
    # Read timeout, connection reset after the request was written, …: may have been sent.
    return AmbiguousProviderError(f"no answer from Twilio: {exc}")


def route_sms(settings: Settings, to_number: str) -> tuple[str, Route | None]:
    """The service a text to ``to_number`` opens a conversation for, and which open ones
    it may continue.

    A number in ``SMS_SERVICES`` serves its own service. Any other number (the
    ``TWILIO_FROM_NUMBER`` or messaging service every other service sends from) serves all
    services without a number of their own: a customer answering one of them continues
    their most recently active open conversation among those, not a new default one.
    """
    numbers = settings.sms_numbers()
    own = numbers.get(to_number.strip())
    if own is not None:
        return own, None
    return settings.default_service, Route(excluded=frozenset(numbers.values()))
