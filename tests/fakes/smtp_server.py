"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives.

``mode`` makes it misbehave the ways real servers do: refuse a recipient permanently (550)
or for now (451), or accept the message and never answer the end of DATA (the ambiguous
case: the client times out not knowing whether the mail went).
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.raw)  # type: ignore[return-value]


@dataclass
class _Handler:
    mode: str = "ok"  # ok | reject | defer | hang
    hang_seconds: float = 3.0
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mode == "reject":
            # As Postfix says it: the refused address quoted.
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if self.mode == "defer":
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(
            Received(
                str(envelope.mail_from), list(envelope.rcpt_tos), bytes(envelope.content or b"")
            )
        )
        if self.mode == "hang":
            await asyncio.sleep(self.hang_seconds)
        return "250 2.0.0 queued"


class FakeSmtp:
    def __init__(self) -> None:
        self.handler = _Handler()
        self.port = _free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """The first ``count`` messages received, waiting for them to arrive."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} mails after {timeout}s")
            time.sleep(0.05)
        return self.received[:count]

    def set_mode(self, mode: str) -> None:
        self.handler.mode = mode

    def start(self) -> FakeSmtp:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
