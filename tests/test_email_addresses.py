"""One email-address rule (RFC 5321 syntax, printable, no CR/LF) for API input and inbound
From; an address SMTP cannot be given is a permanent delivery failure, not a crash."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from conversations.db import session_factory
from conversations.models import OutboxRow
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY
from tests.fakes.smtp_server import FakeSmtp
from tests.test_email_channel import conversations, mail, pending_outbox, post
from workers.deliver import deliver

KEY = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def client(db: Engine, mail_settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(mail_settings, db, waker), raise_server_exceptions=False) as c:
        yield c


REFUSED = {
    "two dots in a row": "ada..lovelace@example.com",
    "a header after a line break": "ada@example.com\r\nbcc:eve@example.net",
    "a control character": "ada\x07@example.com",
    "local part over 64 octets": "a" * 65 + "@example.com",
    "domain starting with a hyphen": "ada@-example.com",
    "no dot in the domain": "ada@localhost",
    "a space unquoted": "ada lovelace@example.com",
}
TAKEN = {
    "plain": ("Ada@Example.com", "ada@example.com"),
    "quoted local part": ('"ada lovelace"@example.com', '"ada lovelace"@example.com'),
    "UTF-8 (RFC 6531)": ("jürgen@bücher.de", "jürgen@bücher.de"),
    "subaddress": ("ada+kettle@example.co.uk", "ada+kettle@example.co.uk"),
}


@pytest.mark.parametrize("address", REFUSED.values(), ids=REFUSED.keys())
def test_the_api_refuses_what_is_not_an_email_address(client: TestClient, address: str) -> None:
    customer = client.post("/v1/customers", json={"emails": [address]}, headers=KEY)
    assert customer.status_code == 422 and "emails[0]" in customer.json()["detail"]
    started = client.post(
        "/v1/conversations",
        json={"service": "support", "channel": "email", "to": address, "message": "Hello"},
        headers=KEY,
    )
    assert started.status_code == 422 and "not an email address" in started.json()["detail"]
    assert conversations(client.app.state.dormouse.engine) == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(("address", "stored"), TAKEN.values(), ids=TAKEN.keys())
def test_the_api_takes_every_address_rfc_5321_allows(
    client: TestClient, address: str, stored: str
) -> None:
    customer = client.post("/v1/customers", json={"emails": [address]}, headers=KEY)
    assert customer.status_code == 201, customer.text
    assert [i["address"] for i in customer.json()["identities"]] == [stored]


@pytest.mark.parametrize(
    "address", [REFUSED["two dots in a row"], REFUSED["local part over 64 octets"]]
)
def test_inbound_mail_from_what_is_not_an_address_is_refused(
    client: TestClient, db: Engine, address: str
) -> None:
    raw = mail("hi").replace(b"From: Ada <ada@example.com>", f"From: <{address}>".encode())
    response = post(client, raw)
    assert response.status_code == 400 and "no valid From address" in response.json()["detail"]
    assert conversations(db) == []


def test_an_address_smtp_cannot_be_given_fails_for_good_and_sends_nothing(
    client: TestClient, db: Engine, mail_settings: Settings, fake_smtp: FakeSmtp
) -> None:
    started = client.post(
        "/v1/conversations",
        json={"service": "support", "channel": "email", "to": "jürgen@bücher.de", "message": "Hi"},
        headers=KEY,
    )
    assert started.status_code == 201, started.text
    [oid] = pending_outbox(db)
    assert deliver(oid, engine=db, settings=mail_settings) == "failed"
    with session_factory(db)() as s:
        row = s.get_one(OutboxRow, oid)
        assert row.status == "failed" and "not ASCII" in (row.last_error or "")
    assert fake_smtp.received == []
