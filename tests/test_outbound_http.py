"""SSRF: what Dormouse POSTs to URLs someone gave it (event webhook endpoints, the chat
callback) reaches only addresses it vetted.

Nothing here leaves loopback. Names are answered by a fake resolver (``socket.getaddrinfo``
replaced, as a DNS server that lies would answer), and every socket connect in these tests
goes through a net that refuses anything but loopback and unix sockets, so a regression that
tried a public or metadata address fails the test without a packet leaving the machine. The
receivers are real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from api.app import create_app
from channels.chat.channel import ChatChannel
from conversations import outbound_http
from conversations import webhook_endpoints as store
from conversations.db import session_factory, transaction
from conversations.envelope import OutboundMessage
from conversations.errors import PermanentProviderError
from conversations.models import Event, WebhookDelivery
from conversations.settings import Settings
from conversations.standard_webhooks import new_whsec
from conversations.types import utcnow
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY
from tests.factories import ingest_sms
from tests.fakes.chat_receiver import ChatReceiver
from tests.fakes.event_receiver import EventReceiver
from tests.fakes.resolver import FakeResolver
from workers import webhooks as sender

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PUBLIC = "93.184.216.34"  # what a lying resolver says first; never connected to (the net)
CHAT_SECRET = "whsec_Y2hhdC1zZWNyZXQtZm9yLXRlc3RzLTAxMjM0NTY3ODk="


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every connect in these tests must be to loopback or a unix socket; any other is
    refused before the syscall and recorded, and the test fails."""
    tried: list[object] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0]).split("%")[0]
            if not ipaddress.ip_address(host).is_loopback:
                tried.append(address)
                raise ConnectionRefusedError(f"test net: {host} is not loopback")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield tried
    assert tried == [], f"tried to connect past loopback: {tried}"


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> FakeResolver:
    return FakeResolver.install(monkeypatch)


@pytest.fixture
def receiver() -> Iterator[EventReceiver]:
    server = EventReceiver(hang_seconds=1.0).start()
    yield server
    server.stop()


@pytest.fixture
def strict(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": False, "webhook_timeout": 0.5})


@pytest.fixture
def lenient(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": True, "webhook_timeout": 0.5})


def api(db: Engine, settings: Settings, waker: CeleryWaker) -> TestClient:
    return TestClient(create_app(settings, db, waker), raise_server_exceptions=False)


def register(db: Engine, settings: Settings, waker: CeleryWaker, url: str) -> Any:
    with api(db, settings, waker) as c:
        return c.post("/v1/webhooks", json={"url": url}, headers=AUTH)


def saved_as_is(db: Engine, url: str, receiver: EventReceiver) -> uuid.UUID:
    """An endpoint stored without the checks of today (one saved by an older Dormouse)."""
    with transaction(db) as s:
        view, secret = store.create(
            s, url=url, event_types=[], service=None, description="", now=utcnow()
        )
    receiver.secrets = [secret]
    return view.id


def reached(receiver: EventReceiver) -> list[object]:
    """Every post that reached the receiver, signed right or not."""
    return [*receiver.posts, *receiver.refused]


def first_delivery(db: Engine) -> WebhookDelivery:
    """The head of the line (conversation.started; message.received waits behind it)."""
    with session_factory(db)() as s:
        row = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).first()
        assert row is not None
        return row


def send(db: Engine, settings: Settings, after: float = 0.0) -> sender.Outcome:
    return sender.send_due(
        None,
        engine=db,
        settings=settings,
        clock=lambda: utcnow() + timedelta(seconds=after),
    )


# --- what is refused: one pure rule, tested as a table -------------------------------------


@pytest.mark.parametrize(
    ("address", "strict_refuses", "lenient_refuses"),
    [
        ("93.184.216.34", False, False),
        ("2606:2800:220:1:248:1893:25c8:1946", False, False),
        ("127.0.0.1", True, False),
        ("10.1.2.3", True, False),
        ("192.168.1.1", True, False),
        ("100.64.0.1", True, False),  # CGNAT
        ("100.100.100.200", True, True),  # Alibaba metadata
        ("169.254.169.254", True, True),  # AWS, GCP, Azure metadata
        ("169.254.0.23", True, True),
        ("192.0.0.192", True, True),  # Oracle metadata
        ("fd00:ec2::254", True, True),  # AWS metadata over IPv6
        ("fe80::1", True, True),
        ("0.0.0.0", True, True),
        ("::", True, True),
        ("224.0.1.1", True, True),
        ("255.255.255.255", True, True),
        ("::1", True, False),
        ("fd12:3456::1", True, False),
        ("::ffff:127.0.0.1", True, False),  # IPv4-mapped
        ("::ffff:169.254.169.254", True, True),
        ("::ffff:93.184.216.34", False, False),
        ("::127.0.0.1", True, False),  # IPv4-compatible
        ("64:ff9b::7f00:1", True, False),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", True, True),  # NAT64 of 169.254.169.254
        ("64:ff9b::5db8:d822", False, False),  # NAT64 of a public address
        ("2002:7f00:1::1", True, False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", True, True),  # 6to4 of 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True, False),  # Teredo
        ("fec0::1", True, False),  # site-local
        ("198.51.100.7", True, False),  # documentation
    ],
)
def test_what_is_refused(address: str, strict_refuses: bool, lenient_refuses: bool) -> None:
    ip = ipaddress.ip_address(address)
    assert (outbound_http.refusal(ip, allow_private=False) is not None) == strict_refuses
    assert (outbound_http.refusal(ip, allow_private=True) is not None) == lenient_refuses


def test_private_targets_are_refused_by_default_outside_embedded_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WEBHOOK_ALLOW_PRIVATE", raising=False)
    assert Settings(database_url="").allow_private_targets is True  # embedded
    production = Settings(database_url="postgresql+psycopg://u@db/dormouse")
    assert production.allow_private_targets is False
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "true")
    assert Settings(database_url="postgresql+psycopg://u@db/dormouse").allow_private_targets
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "")
    assert Settings(database_url="postgresql+psycopg://u@db/x").allow_private_targets is False


# --- at registration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://100.100.100.200/latest/meta-data", "refused"),
        ("http://100.64.7.7/hook", "refused"),
        ("http://cgnat.example.test/hook", "refused"),
        ("http://nowhere.example.test/hook", "does not resolve"),
        ("http://mixed.example.test/hook", "refused"),  # one public, one loopback address
    ],
)
def test_registration_refuses_what_is_not_public_and_names_that_do_not_resolve(
    db: Engine,
    strict: Settings,
    waker: CeleryWaker,
    resolver: FakeResolver,
    url: str,
    says: str,
) -> None:
    resolver.name("cgnat.example.test", "100.100.100.200")
    resolver.name("mixed.example.test", PUBLIC, "127.0.0.1")
    answer = register(db, strict, waker, url)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("url: ") and says in answer.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.example.test/computeMetadata/v1/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_metadata_addresses_are_refused_even_when_private_targets_are_allowed(
    db: Engine, lenient: Settings, waker: CeleryWaker, resolver: FakeResolver, url: str
) -> None:
    resolver.name("metadata.example.test", "169.254.169.254")
    answer = register(db, lenient, waker, url)
    assert answer.status_code == 422 and "refused" in answer.json()["detail"], answer.text


@pytest.mark.parametrize("bad", ["\t", "\n", "\r\n", " ", "\x00", "\x7f", "\u00a0", "\u2028"])
def test_a_url_with_whitespace_or_a_control_character_is_refused_naming_the_field(
    db: Engine, lenient: Settings, waker: CeleryWaker, receiver: EventReceiver, bad: str
) -> None:
    with api(db, lenient, waker) as c:
        created = c.post("/v1/webhooks", json={"url": receiver.url + bad}, headers=AUTH)
        assert created.status_code == 422 and created.json()["detail"].startswith("url: ")
        inside = receiver.url.replace("/hook", f"/ho{bad}ok")
        assert c.post("/v1/webhooks", json={"url": inside}, headers=AUTH).status_code == 422
        ok = c.post("/v1/webhooks", json={"url": receiver.url}, headers=AUTH)
        assert ok.status_code == 201
        patched = c.patch(f"/v1/webhooks/{ok.json()['id']}", json={"url": inside}, headers=AUTH)
        assert patched.status_code == 422 and patched.json()["detail"].startswith("url: ")


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",
        "2130706433",  # 127.0.0.1 as one number
        "0x7f000001",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "127.1",
        "this-machine.example.test",  # a name of this machine
    ],
)
def test_this_api_is_recognized_by_its_addresses_not_its_spelling(
    db: Engine, lenient: Settings, waker: CeleryWaker, resolver: FakeResolver, host: str
) -> None:
    resolver.name("this-machine.example.test", "127.0.1.1")
    answer = register(db, lenient, waker, f"http://{host}:{lenient.port}/v1/webhooks")
    assert answer.status_code == 422 and "this API itself" in answer.json()["detail"], answer.text


def test_another_name_of_the_public_url_is_this_api_too(
    db: Engine, lenient: Settings, waker: CeleryWaker, resolver: FakeResolver
) -> None:
    resolver.name("dormouse.test", "10.9.8.7")  # PUBLIC_URL of the test settings
    resolver.name("alias.example.test", "10.9.8.7")
    answer = register(db, lenient, waker, "http://alias.example.test/v1/webhooks")
    assert answer.status_code == 422 and "this API itself" in answer.json()["detail"]
    elsewhere = register(db, lenient, waker, "http://alias.example.test:8080/hook")
    assert elsewhere.status_code == 201, elsewhere.text  # another port: another service


def own_addresses() -> list[str]:
    """This machine's interface addresses other than loopback (psutil reads the kernel's
    list; ``hostname -I`` is not on every machine)."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ipaddress.ip_address(entry.address.split("%")[0])
            if not (address.is_loopback or address.is_link_local):
                found.append(str(address))
    return found


def test_this_machine_has_an_interface_address_to_test_with() -> None:
    assert own_addresses(), "no non-loopback interface address: the test below checks none"


@pytest.mark.parametrize("address", own_addresses())
def test_an_interface_address_of_this_machine_on_port_is_this_api(
    db: Engine, lenient: Settings, waker: CeleryWaker, resolver: FakeResolver, address: str
) -> None:
    resolver.name("box.example.test", address)
    answer = register(db, lenient, waker, f"http://box.example.test:{lenient.port}/hook")
    assert answer.status_code == 422 and "this API itself" in answer.json()["detail"]


# --- at every post -------------------------------------------------------------------------


def test_a_name_that_rebinds_to_loopback_after_it_was_vetted_is_not_reached(
    db: Engine,
    strict: Settings,
    waker: CeleryWaker,
    resolver: FakeResolver,
    receiver: EventReceiver,
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    resolver.name("rebind.example.test", PUBLIC)  # public when it is saved
    answer = register(db, strict, waker, f"http://rebind.example.test:{port}/hook")
    assert answer.status_code == 201, answer.text
    receiver.secrets = [answer.json()["secret"]]
    # Then a TTL-0 rebinding: any lookup made to check the name (no port asked) still gets
    # the public address; the lookup for a connection (a port asked) gets loopback.
    resolver.answers["rebind.example.test"] = lambda _n, p: ["127.0.0.1"] if p else [PUBLIC]
    resolver.lookups.clear()
    ingest_sms(db, "hello")
    send(db, strict)
    assert reached(receiver) == []
    row = first_delivery(db)
    assert row.status == "pending" and row.attempts == 1
    assert (row.last_error or "").startswith("refused: 'rebind.example.test' resolves to 127.0.0.1")
    assert len(resolver.lookups) == 1  # resolved once: the address vetted is the one dialled


def test_a_refusal_says_the_same_whether_the_port_is_open_or_closed(
    db: Engine,
    strict: Settings,
    waker: CeleryWaker,
    resolver: FakeResolver,
    receiver: EventReceiver,
) -> None:
    open_port = int(receiver.url.split(":")[2].split("/")[0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens once this is closed
    resolver.name("loop.example.test", "127.0.0.1")
    errors = []
    for port in (open_port, closed_port):
        c = outbound_http.client(allow_private=False, timeout=1, headers={})
        with c, pytest.raises(outbound_http.TargetRefused) as refused:
            c.post(f"http://loop.example.test:{port}/hook", content=b"{}")
        errors.append(str(refused.value))
    assert errors[0] == errors[1] and errors[0].startswith("refused")
    assert reached(receiver) == []


def test_a_vetted_name_is_posted_to_on_one_lookup(
    resolver: FakeResolver, receiver: EventReceiver
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    resolver.name("hooks.example.test", "127.0.0.1")
    secret = new_whsec()
    receiver.secrets = [secret]
    headers = sender.sign([secret], "evt_1", "{}", time.time())
    with outbound_http.client(allow_private=True, timeout=2, headers={}) as c:
        answer = c.post(f"http://hooks.example.test:{port}/hook", content=b"{}", headers=headers)
    assert answer.status_code == 200 and len(receiver.taken()) == 1
    assert resolver.lookups == [("hooks.example.test", int(port))]


def test_the_chat_callback_goes_through_the_same_guard(
    settings: Settings, resolver: FakeResolver
) -> None:
    chat = ChatReceiver(CHAT_SECRET).start()
    try:
        port = chat.url.split(":")[2].split("/")[0]
        resolver.name("callback.example.test", "127.0.0.1")
        strict_chat = settings.model_copy(
            update={
                "webhook_allow_private": False,
                "chat_webhook_secret": CHAT_SECRET,
                "chat_callback_url": f"http://callback.example.test:{port}/chat",
            }
        )
        message = OutboundMessage(
            channel="chat", to="U1", text="hi", idempotency_key="k1", conversation_id="c1"
        )
        with pytest.raises(PermanentProviderError, match="refused"):
            ChatChannel(strict_chat).send(message)
        assert chat.received == []
        resolver.name("callback.example.test", "169.254.169.254")
        lenient_chat = strict_chat.model_copy(update={"webhook_allow_private": True})
        with pytest.raises(PermanentProviderError, match="refused"):
            ChatChannel(lenient_chat).send(message)
        resolver.name("callback.example.test", "127.0.0.1")
        assert ChatChannel(lenient_chat).send(message).status == "sent"
        assert len(chat.received) == 1
    finally:
        chat.stop()


def test_a_chat_callback_url_with_a_control_character_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="CHAT_CALLBACK_URL"):
        Settings(chat_callback_url="http://127.0.0.1:9/chat\nX-Forged: 1")


# --- a URL that breaks every post (saved before the checks) --------------------------------


def test_any_error_while_posting_is_a_failed_attempt_and_the_url_is_logged_quoted(
    db: Engine,
    lenient: Settings,
    receiver: EventReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    saved_as_is(db, receiver.url + "\n2026-01-01 INFO forged line", receiver)
    ingest_sms(db, "hello")
    with caplog.at_level(logging.INFO, logger="workers.webhooks"):
        send(db, lenient)
    row = first_delivery(db)
    assert row.status == "pending" and row.attempts == 1 and row.last_error
    assert reached(receiver) == []
    [line] = [r.getMessage() for r in caplog.records if r.name == "workers.webhooks"]
    assert "\n" not in line and "\\n2026-01-01" in line


def test_a_delivery_whose_workers_keep_dying_is_failed_not_claimed_forever(
    db: Engine, lenient: Settings, receiver: EventReceiver
) -> None:
    saved_as_is(db, receiver.url, receiver)
    ingest_sms(db, "hello")
    attempts = len(lenient.webhook_schedule)
    long_ago = utcnow() - timedelta(hours=1)
    with transaction(db) as s:
        s.execute(
            update(WebhookDelivery).values(
                status="sending", attempts=attempts, claimed_at=long_ago, claim_token=uuid.uuid4()
            )
        )
    send(db, lenient)
    row = first_delivery(db)
    assert row.status == "failed" and "never settled" in (row.last_error or "")
    assert reached(receiver) == []
    with session_factory(db)() as s:
        assert s.scalar(select(Event.id)) is not None  # the event itself stays


# --- TLS: the vetted IP is dialled, the name is what is verified ---------------------------


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    """An HTTPS server on 127.0.0.1 whose self-signed certificate names hooks.example.test."""
    assert shutil.which("openssl"), "these tests need openssl (apt-get install openssl)"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.example.test",
         "-addext", "subjectAltName=DNS:hooks.example.test"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            hosts.append(self.headers.get("host", ""))
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], cert, hosts
    finally:
        server.shutdown()
        server.server_close()


def test_https_to_a_vetted_address_still_verifies_the_name(
    resolver: FakeResolver, tls_receiver: tuple[int, Path, list[str]]
) -> None:
    port, cert, hosts = tls_receiver
    trust = ssl.create_default_context(cafile=str(cert))
    resolver.name("hooks.example.test", "127.0.0.1")
    resolver.name("other.example.test", "127.0.0.1")
    with outbound_http.client(allow_private=True, timeout=5, headers={}, verify=trust) as c:
        answer = c.post(f"https://hooks.example.test:{port}/hook", content=b"{}")
        assert answer.status_code == 204 and hosts == [f"hooks.example.test:{port}"]
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
            c.post(f"https://other.example.test:{port}/hook", content=b"{}")
