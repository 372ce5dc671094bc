"""A resolver that lies as a test says: ``socket.getaddrinfo`` answering the names a test
gives, the real one only for what the C library reads without DNS (IP literals in any
spelling it accepts, ``localhost`` from /etc/hosts), and "no such name" for every other name,
so no DNS query leaves a test."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import pytest

Answer = Callable[[str, Any], list[str] | None]


class FakeResolver:
    """``socket.getaddrinfo`` for the names a test gives; the real one for IP literals and
    localhost (answered by the C library from the address itself and /etc/hosts)."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.answers: dict[str, Answer] = {}
        self.lookups: list[tuple[str, Any]] = []

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        answer = self.answers.get(name.lower())
        if answer is None:
            if name != "localhost" and not _literal(name):  # no DNS query leaves the test
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return self.real(host, port, *args, **kwargs)
        self.lookups.append((name, port))
        addresses = answer(name, port)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for a in addresses:
            family = socket.AF_INET6 if ":" in a else socket.AF_INET
            where = (a, int(port or 0), 0, 0) if family == socket.AF_INET6 else (a, int(port or 0))
            out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", where))
        return out

    def name(self, name: str, *addresses: str) -> None:
        self.answers[name] = lambda _n, _p: list(addresses)

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch) -> FakeResolver:
        fake = cls(socket.getaddrinfo)
        monkeypatch.setattr(socket, "getaddrinfo", fake)
        return fake


def _literal(name: str) -> bool:
    """An address the C library reads without asking DNS (``127.1``, ``0x7f000001`` too)."""
    try:
        ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        try:
            socket.inet_aton(name)
        except OSError:
            return False
    return True
