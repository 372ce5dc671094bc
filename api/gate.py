"""What every ``/v1`` request passes before any route sees it: the API key, then the size.

A route's body is parsed before its dependencies run, so a key checked as a dependency let
an unauthenticated caller learn from 400/422 answers what the API expects. Here the key is
checked first, and a body over ``MAX_API_BYTES`` is refused (413) before it is read whole.
Pure ASGI, not BaseHTTPMiddleware: the webhooks, the busiest routes, pass through untouched.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import MEDIA_TYPE, problem_body

API_PREFIX = "/v1/"


class ApiGate:
    def __init__(self, app: ASGIApp, keys: Mapping[str, str], max_bytes: int) -> None:
        self.app, self.keys, self.max_bytes = app, keys, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        name, refused = self._key_name(headers.get("authorization", ""))
        if name is None:
            await _answer(send, 401, refused, {"WWW-Authenticate": "Bearer"})
            return
        scope.setdefault("state", {})["api_key_name"] = name  # request.state.api_key_name
        declared = headers.get("content-length", "")
        if declared.isdigit():
            if int(declared) > self.max_bytes:
                await _answer(send, 413, self._too_large())
                return
            await self.app(scope, receive, send)
            return
        # No length declared (chunked): read it here, counting, and hand the app the whole.
        body = await read_capped(receive, self.max_bytes)
        if body is None:
            await _answer(send, 413, self._too_large())
            return
        await self.app(scope, replay(body, receive), send)

    def _key_name(self, header: str) -> tuple[str | None, str]:
        """The calling key's name, or None and why not."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "missing Authorization: Bearer <key>"
        for key, name in self.keys.items():
            if hmac.compare_digest(key.encode(), token.strip().encode()):
                return name, ""
        return None, "unknown API key"

    def _too_large(self) -> str:
        return f"request body over {self.max_bytes} bytes (MAX_API_BYTES)"


async def read_capped(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``max_bytes``."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away: the app will see it
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > max_bytes:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body read already, then the client's messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _answer(
    send: Send, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    body = json.dumps(problem_body(status, detail)).encode()
    raw = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
