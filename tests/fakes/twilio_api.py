"""A local HTTP server that speaks the part of Twilio's REST API Dormouse uses.

Messages.json create and list, with Twilio's response shapes and error bodies; scripted
failures; and status callbacks posted back to Dormouse signed like Twilio signs them.
The production twilio SDK talks to it unchanged (through TWILIO_API_URL).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
from twilio.request_validator import RequestValidator

from tests.fakes.local_http import LocalHttpFake

MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC\w+)/Messages\.json$")


@dataclass
class SentMessage:
    sid: str
    to: str
    from_: str
    body: str
    status_callback: str
    created: datetime
    status: str = "queued"


@dataclass
class FakeTwilio(LocalHttpFake):
    methods: ClassVar[tuple[str, ...]] = ("POST", "GET")
    account_sid: str
    auth_token: str
    messages: list[SentMessage] = field(default_factory=list)
    create_attempts: int = 0
    # Scripted answers for the next create calls: "ok", "500", "500-after-create",
    # "timeout-after-create", "429", or an int Twilio error code (answered with a 400).
    script: list[str | int] = field(default_factory=list)
    hang_seconds: float = 3.0
    next_sids: list[str] = field(default_factory=list)  # sids to hand out before random ones
    on_create: Callable[[], None] | None = None  # runs as a message is accepted (fault tests)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    # messages by recipient: a benchmark asks for each of 100,000 numbers in turn
    _by_to: dict[str, list[SentMessage]] = field(default_factory=dict)

    def sent_to(self, number: str) -> list[SentMessage]:
        with self.lock:
            return list(self._by_to.get(number, ()))

    def wait_for(
        self, count: int, to: str | None = None, timeout: float = 20.0
    ) -> list[SentMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.sent_to(to) if to else list(self.messages)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} message(s) at fake Twilio, got {len(found)}")

    def send_status_callback(self, sid: str, status: str, error_code: str | None = None) -> int:
        """POST a signed status callback to the URL Dormouse gave on create, as Twilio does."""
        message = next(m for m in self.messages if m.sid == sid)
        params = {
            "MessageSid": sid,
            "MessageStatus": status,
            "AccountSid": self.account_sid,
            "To": message.to,
            "From": message.from_,
        }
        if error_code:
            params["ErrorCode"] = error_code
        signature = RequestValidator(self.auth_token).compute_signature(
            message.status_callback, params
        )
        response = httpx.post(
            message.status_callback, data=params, headers={"X-Twilio-Signature": signature}
        )
        return response.status_code

    # --- protocol ------------------------------------------------------------------------

    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(req.path)
        match = MESSAGES.match(parts.path)
        if not match or match["account"] != self.account_sid:
            return self._json(req, 404, _error(20404, "The requested resource was not found"))
        if not self._authorized(req):
            return self._json(req, 401, _error(20003, "Authenticate"))
        if method == "GET":
            return self._list(req, parse_qs(parts.query))
        length = int(req.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(req.rfile.read(length).decode()).items()}
        return self._create(req, form)

    def _authorized(self, req: BaseHTTPRequestHandler) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return req.headers.get("Authorization") == f"Basic {expected}"

    def _create(self, req: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        with self.lock:
            self.create_attempts += 1
            step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, int):
            # Twilio's own words, which often name the number.
            said = ERROR_MESSAGES.get(step, "Twilio error {code}")
            return self._json(req, 400, _error(step, said.format(code=step, to=form.get("To"))))
        if step == "429":
            return self._json(req, 429, _error(20429, "Too Many Requests"))
        if step == "500":
            return self._json(req, 500, _error(20500, "Internal Server Error"))
        if "To" not in form or "Body" not in form:
            return self._json(req, 400, _error(21604, "A 'To' and 'Body' are required"))
        with self.lock:
            sid = self.next_sids.pop(0) if self.next_sids else "SM" + uuid.uuid4().hex
        message = SentMessage(
            sid=sid,
            to=form["To"],
            from_=form.get("From") or form.get("MessagingServiceSid", ""),
            body=form["Body"],
            status_callback=form.get("StatusCallback", ""),
            created=datetime.now(UTC),
        )
        with self.lock:
            self.messages.append(message)
            self._by_to.setdefault(message.to, []).append(message)
        if self.on_create is not None:
            self.on_create()
        if step == "timeout-after-create":
            time.sleep(self.hang_seconds)  # longer than the client's timeout: it gives up
        if step == "500-after-create":
            return self._json(req, 500, _error(20500, "Internal Server Error"))
        return self._json(req, 201, self._resource(message))

    def _list(self, req: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        to = query.get("To", [None])[0]
        from_ = query.get("From", [None])[0]
        # Like Twilio: DateSent filters on the send date, which a queued message lacks.
        sent_filter = next((k for k in query if k.startswith("DateSent")), None)
        with self.lock:
            found = [
                m
                for m in self.messages
                if (to is None or m.to == to)
                and (from_ is None or m.from_ == from_)
                and (sent_filter is None or m.status not in ("queued", "accepted"))
            ]
        body = {
            "messages": [self._resource(m) for m in reversed(found)],
            "end": len(found),
            "first_page_uri": "",
            "next_page_uri": None,
            "page": 0,
            "page_size": 50,
            "previous_page_uri": None,
            "start": 0,
            "uri": req.path,
        }
        return self._json(req, 200, body)

    def _resource(self, m: SentMessage) -> dict[str, object]:
        stamp = format_datetime(m.created, usegmt=True)
        return {
            "sid": m.sid,
            "account_sid": self.account_sid,
            "to": m.to,
            "from": m.from_,
            "body": m.body,
            "status": m.status,
            "direction": "outbound-api",
            "date_created": stamp,
            "date_updated": stamp,
            "date_sent": None,
            "num_segments": "1",
            "error_code": None,
            "error_message": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{m.sid}.json",
        }

    @staticmethod
    def _json(req: BaseHTTPRequestHandler, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            req.wfile.write(data)  # the client may have given up (timeout scripts)


ERROR_MESSAGES = {
    21211: "The 'To' number {to} is not a valid phone number.",
    21610: "Attempt to send to unsubscribed recipient {to}",
    21614: "'To' number {to} is not a valid mobile number",
}


def _error(code: int, message: str) -> dict[str, object]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": 400,
    }
