"""A local HTTP server receiving chat callbacks as a chat platform's adapter would.

It verifies each POST's Standard Webhooks signature with the standardwebhooks package (an
unsigned or wrongly signed one is answered 401 and recorded as refused), records the body
and headers, and answers as scripted for the next requests: a status code ("500", "410"),
"timeout" (holds the answer longer than the client waits), or "ok".
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from standardwebhooks import Webhook, WebhookVerificationError

from tests.fakes.local_http import LocalHttpFake


@dataclass
class Received:
    webhook_id: str
    timestamp: str
    body: dict[str, Any]
    answered: int | str  # the status code given, or "timeout"


@dataclass
class ChatReceiver(LocalHttpFake):
    path: ClassVar[str] = "/dormouse"
    secret: str
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why unsigned/bad posts were refused
    script: list[str] = field(default_factory=list)  # answers for the next requests
    hang_seconds: float = 3.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def answer_next(self, *answers: str) -> None:
        with self.lock:
            self.script.extend(answers)

    def delivered(self) -> list[Received]:
        """What was received and answered 2xx: what the platform took."""
        with self.lock:
            return [r for r in self.received if r.answered == 200]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} callback(s), got {len(self.received)}")

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            body = Webhook(self.secret).verify(raw, headers)
        except (WebhookVerificationError, ValueError) as exc:
            with self.lock:
                self.refused.append(str(exc))
            self._answer(handler, 401)
            return
        with self.lock:
            answer = self.script.pop(0) if self.script else "ok"
            self.received.append(
                Received(
                    webhook_id=headers["webhook-id"],
                    timestamp=headers["webhook-timestamp"],
                    body=body,
                    answered="timeout"
                    if answer == "timeout"
                    else (200 if answer == "ok" else int(answer)),
                )
            )
        if answer == "timeout":
            time.sleep(self.hang_seconds)
            self._answer(handler, 200)  # too late: the client gave up
        else:
            self._answer(handler, 200 if answer == "ok" else int(answer))

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int) -> None:
        payload = json.dumps({"status": status}).encode()
        try:
            handler.send_response(status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting: as a real receiver would see it
