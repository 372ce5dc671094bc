"""A local HTTP server receiving Dormouse's event webhooks as a customer's service would.

Each POST must verify, with the standardwebhooks package, against every secret the test
says it holds (after a rotation: the old one and the new one, each on its own). A post that
does not is answered 401 and recorded as refused. It answers as scripted for the next
requests: a status code ("500", "410"), "timeout" (answers after the client gave up), or
"ok".
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
class Post:
    webhook_id: str
    signature: str
    body: dict[str, Any]
    answered: int | str


@dataclass
class EventReceiver(LocalHttpFake):
    path: ClassVar[str] = "/hook"
    secrets: list[str] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    script: list[str] = field(default_factory=list)
    hang_seconds: float = 1.5
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def answer_next(self, *answers: str) -> None:
        with self.lock:
            self.script.extend(answers)

    def taken(self) -> list[Post]:
        """The posts answered 2xx, first copy of each webhook-id only (as a receiver that
        dedupes keeps them)."""
        seen: set[str] = set()
        kept = []
        with self.lock:
            for post in self.posts:
                if post.answered == 200 and post.webhook_id not in seen:
                    seen.add(post.webhook_id)
                    kept.append(post)
        return kept

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Post]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.taken()) >= count:
                return self.taken()
            time.sleep(0.05)
        raise AssertionError(f"expected {count} event(s), got {len(self.taken())}")

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raw = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            body: dict[str, Any] = {}
            for secret in self.secrets:
                body = Webhook(secret).verify(raw, headers)
        except (WebhookVerificationError, ValueError) as exc:
            with self.lock:
                self.refused.append(str(exc))
            self._answer(handler, 401)
            return
        with self.lock:
            answer = self.script.pop(0) if self.script else "ok"
            code: int | str = (
                "timeout" if answer == "timeout" else (200 if answer == "ok" else int(answer))
            )
            self.posts.append(Post(headers["webhook-id"], headers["webhook-signature"], body, code))
        if answer == "timeout":
            time.sleep(self.hang_seconds)
        self._answer(handler, 200 if answer in ("ok", "timeout") else int(answer))

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
            pass
