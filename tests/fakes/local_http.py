"""What the fakes that speak HTTP share: a threading server on 127.0.0.1 at a free port, its
URL, and stopping it. Each fake answers requests in ``handle``; nothing else is its own."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, Self


class LocalHttpFake:
    """Mixed into a fake (a dataclass holding ``server``), which writes ``handle``."""

    server: ThreadingHTTPServer | None
    path: ClassVar[str] = ""  # what the URL ends with
    methods: ClassVar[tuple[str, ...]] = ("POST",)

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self.server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self.server.server_port}{self.path}"

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        for method in self.methods:
            setattr(Handler, f"do_{method}", _dispatch(fake, method))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _dispatch(fake: LocalHttpFake, method: str) -> object:
    def do(request: BaseHTTPRequestHandler) -> None:
        fake.handle(request, method)

    return do
