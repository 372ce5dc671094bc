"""What every console request passes before the console reads it: a small urlencoded body.

The console's forms are a few fields and a reply's text; a 300 MB multipart post to
``/console/sign-in`` (no account needed) was read and spooled to disk in full before the form
token was looked at. Here a body over ``MAX_CONSOLE_BYTES`` is refused (413) from its
Content-Length before any of it is read, or as soon as a chunked one passes the cap; a body
of any type but ``application/x-www-form-urlencoded`` is refused (415) unread, so the
multipart parser never runs. Pure ASGI, in the shape of api/gate.py.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from api.console.render import HEADERS, templates
from api.gate import read_capped, replay

# An operator's reply of several thousand characters, url-encoded, and the form's fields.
MAX_CONSOLE_BYTES = 16 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
BODILESS = {"GET", "HEAD", "OPTIONS"}


class ConsoleGate:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_CONSOLE_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, 413, "Too much sent", self._too_large())
            return
        if scope["method"] not in BODILESS:
            kind = headers.get("content-type", "").partition(";")[0].strip().lower()
            if kind != FORM_TYPE:
                await self._refuse(
                    send, 415, "Not a form", "The console takes only its own forms' posts."
                )
                return
        if declared.isdigit() or (
            scope["method"] in BODILESS and "transfer-encoding" not in headers
        ):
            await self.app(scope, receive, send)
            return
        # No length declared (chunked): read it here, counting, and hand the app the whole.
        body = await read_capped(receive, self.max_bytes)
        if body is None:
            await self._refuse(send, 413, "Too much sent", self._too_large())
            return
        await self.app(scope, replay(body, receive), send)

    def _too_large(self) -> str:
        return f"A console form carries at most {self.max_bytes // 1024} KiB."

    async def _refuse(self, send: Send, status: int, title: str, detail: str) -> None:
        html = templates.get_template("refused.html").render(
            title=title, detail=detail, operator=None, csrf="", flash=None, path=""
        )
        body = html.encode()
        raw = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *((k.lower().encode(), v.encode()) for k, v in HEADERS.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
