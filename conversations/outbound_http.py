"""Every POST to a URL someone gave us (event webhook endpoints, ``CHAT_CALLBACK_URL``) goes
through this module: the host is resolved once, every address it resolves to is vetted, and
the connection is made to a vetted address. A check on one lookup followed by a connection
that looks the name up again is open to DNS rebinding (public at the check, ``127.0.0.1`` at
the connect); here there is no second lookup to rebind.

The connection is made by httpcore's own network backend, handed the vetted IP instead of the
name: httpcore takes the ``Host`` header, TLS SNI and certificate verification from the URL,
not from what the backend dialled, so HTTPS still verifies the name. Redirects are never
followed, and environment proxies are not used (an explicit transport turns them off in
httpx), so nothing reaches an address that was not vetted.

What is refused (``refusal``): with private targets not allowed, every address that is not
globally routable, after unwrapping the IPv6 forms that embed an IPv4 address (IPv4-mapped
``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4
``2002::/16``, Teredo); CGNAT ``100.64.0.0/10`` is not global, which takes Alibaba's metadata
at 100.100.100.200 with it. Always, even with private targets allowed: link-local
(169.254.0.0/16, fe80::/10, where most clouds keep their metadata service), the other cloud
metadata addresses, "this network" (0.0.0.0/8, ``::``, which Linux connects to loopback),
multicast and broadcast. A refusal happens before any connection is tried, so it says the same
"refused" whether a port there is open or closed.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import unicodedata
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from conversations.errors import DormouseError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused even when private targets are allowed: nothing a receiver runs on, and where the
# cloud keeps credentials. Link-local and multicast are checked by their properties.
ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network": 0.0.0.0 reaches loopback on Linux
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.192/32",  # Oracle Cloud metadata
        "255.255.255.255/32",
        "::/128",
        "fd00:ec2::/32",  # AWS instance services over IPv6 (metadata at fd00:ec2::254)
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): what it maps to is not ours to know
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
SITE_LOCAL = ipaddress.ip_network("fec0::/10")


class TargetRefused(DormouseError):
    """An outbound POST not made: the host resolves to an address we do not send to. The
    message starts with "refused"."""


class Unresolvable(TargetRefused):
    """The host does not resolve (now): nothing could be vetted, so nothing is sent."""


def bad_character(url: str) -> str | None:
    """The first whitespace or control character in ``url``, if any: a tab or a newline in a
    URL breaks every post to it, and forges a log line wherever it is printed."""
    return next((c for c in url if c.isspace() or unicodedata.category(c)[0] in "CZ"), None)


def unwrapped(address: IPAddress) -> list[IPAddress]:
    """The addresses a connection to ``address`` really reaches: the IPv4 address inside an
    IPv6 wrapper (beside the Teredo relay), else the address itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        server, client = address.teredo
        return [address, server, client]
    if address in NAT64 or (
        address in IPV4_COMPATIBLE and not (address.is_loopback or address.is_unspecified)
    ):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return [address]


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why ``address`` is not sent to, or None when it may be."""
    for inner in unwrapped(address):
        if inner.is_link_local:
            return "a link-local address (where cloud metadata lives)"
        if inner.is_multicast or any(inner in net for net in ALWAYS_REFUSED):
            return "an address no receiver runs on, or a cloud metadata address"
        if allow_private:
            continue
        if not inner.is_global or inner.is_reserved or inner in SITE_LOCAL:
            return "not a public address, and WEBHOOK_ALLOW_PRIVATE is false"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order (an IP literal is itself).
    Raises ``Unresolvable`` when there is none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"refused: {host!r} does not resolve ({exc})") from None
    found: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # an IPv6 scope id names an interface
        address = ipaddress.ip_address(text)
        if address not in found:
            found.append(address)
    if not found:
        raise Unresolvable(f"refused: {host!r} resolves to no address")
    return found


def vet(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """``host``'s addresses, all of them allowed; ``TargetRefused`` if any is not (a name that
    resolves to one public and one private address is a rebinding in waiting)."""
    addresses = resolve(host, port)
    for address in addresses:
        why = refusal(address, allow_private=allow_private)
        if why is not None:
            raise TargetRefused(f"refused: {host!r} resolves to {address}, {why}")
    return addresses


class VettingBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, dialling the vetted addresses of the host it is asked
    for instead of looking the name up itself."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._tcp = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = vet(host, port, allow_private=self.allow_private)
        failed: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return self._tcp.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # the next address may answer
                failed = exc
        assert failed is not None
        raise failed

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise TargetRefused("refused: a unix socket is not a URL anyone may give")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connection pool dials through ``VettingBackend``."""

    def __init__(
        self,
        *,
        allow_private: bool,
        verify: Any = True,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(verify=verify, limits=limits)
        # The pool httpx built is replaced by the same one with our backend: httpx has no
        # argument for it, httpcore's ConnectionPool does (its public constructor).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=VettingBackend(allow_private=allow_private),
        )


def client(
    *,
    allow_private: bool,
    timeout: float,
    headers: dict[str, str],
    verify: Any = True,
) -> httpx.Client:
    """A client for POSTs to URLs someone gave: vetted addresses only, no redirects followed,
    no environment proxy. ``TargetRefused`` comes out of ``post`` as it is."""
    return httpx.Client(
        transport=GuardedTransport(allow_private=allow_private, verify=verify),
        follow_redirects=False,
        timeout=timeout,
        headers=headers,
    )
