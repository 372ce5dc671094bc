"""EMAIL_REQUIRE_AUTH: mail the receiving service does not vouch for is stored and held, runs
no turn and sends nothing, until an operator releases it (API, CLI; the console's button is
tested in tests/test_console.py's style below). Real database, broker and SMTP server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.app import create_app
from channels.mail.authentication import Verdict, judge
from conversations.db import session_factory
from conversations.models import Conversation, Event, Message, OutboxRow
from conversations.settings import Settings
from conversations.wakeup import TURN_QUEUE, CeleryWaker
from tests.conftest import API_KEY, queued
from tests.fakes.smtp_server import FakeSmtp
from tests.test_email_channel import answer, mail, post

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PASS = "mx.acme.test; spf=pass smtp.mailfrom=ada@example.com; dmarc=pass header.from=example.com"


@pytest.fixture
def strict(mail_settings: Settings) -> Settings:
    # "": the default outside embedded mode, dmarc.
    return mail_settings.model_copy(update={"email_require_auth": ""})


@pytest.fixture
def client(db: Engine, strict: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(strict, db, waker), raise_server_exceptions=False) as c:
        yield c


def the_conversation(db: Engine, cid: str) -> Conversation:
    with session_factory(db)() as s:
        return s.get_one(Conversation, uuid.UUID(cid))


def event_types(db: Engine, cid: str) -> list[str]:
    with session_factory(db)() as s:
        query = select(Event.type).where(Event.conversation_id == uuid.UUID(cid))
        return list(s.scalars(query.order_by(Event.id)))


def outbox(db: Engine) -> list[OutboxRow]:
    with session_factory(db)() as s:
        return list(s.scalars(select(OutboxRow)))


def test_the_default_outside_embedded_mode_is_dmarc(strict: Settings) -> None:
    assert strict.email_auth_rule == "dmarc"
    assert Settings().email_auth_rule == "off"  # embedded: no DATABASE_URL


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no verdict at all
        {"Authentication_Results": "mx.acme.test; dmarc=fail header.from=example.com"},
        # SPF passed, but for the forger's own domain: not aligned with From.
        {"Authentication_Results": "mx.acme.test; spf=pass smtp.mailfrom=x@evil.test"},
    ],
    ids=["no-verdict", "dmarc-fail", "spf-unaligned"],
)
def test_forged_mail_is_stored_and_held_no_turn_no_reply(
    client: TestClient,
    db: Engine,
    strict: Settings,
    waker: CeleryWaker,
    fake_smtp: FakeSmtp,
    headers: dict[str, str],
) -> None:
    answered = post(client, mail("Refund me", **headers))
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "held"
    cid = answered.json()["conversation_id"]

    conversation = the_conversation(db, cid)
    assert conversation.status == "held"
    assert conversation.held_reason and "email authentication failed" in conversation.held_reason
    assert queued(strict.effective_broker_url, TURN_QUEUE) == []  # no turn woken
    answer(db, strict, waker, cid)  # even a stray wake-up answers nothing
    assert outbox(db) == [] and fake_smtp.received == []
    assert "conversation.held" in event_types(db, cid)

    shown = client.get(f"/v1/conversations/{cid}", headers=AUTH).json()
    assert (shown["status"], shown["held_reason"]) == ("held", conversation.held_reason)
    [message] = shown["messages"]
    assert message["inbound_state"] == "held"
    assert message["meta"]["authentication"]["passed"] is False
    listed = client.get("/v1/conversations?status=held", headers=AUTH).json()
    assert [c["id"] for c in listed] == [cid]


def test_an_operator_release_lets_the_agent_answer(
    client: TestClient, db: Engine, strict: Settings, waker: CeleryWaker, fake_smtp: FakeSmtp
) -> None:
    cid = post(client, mail("Refund me")).json()["conversation_id"]
    released = client.post(f"/v1/conversations/{cid}/release", headers=AUTH)
    assert released.status_code == 200, released.text
    assert released.json()["status"] == "suspended" and released.json()["held_reason"] is None
    assert [args for _, args in queued(strict.effective_broker_url, TURN_QUEUE)] == [[cid]]

    answer(db, strict, waker, cid)
    [sent] = fake_smtp.received
    assert sent.rcpt_tos == ["ada@example.com"]
    assert "conversation.released" in event_types(db, cid)
    again = client.post(f"/v1/conversations/{cid}/release", headers=AUTH)
    assert again.status_code == 409 and "not held" in again.json()["detail"]


def test_mail_the_receiving_service_vouches_for_is_answered(
    client: TestClient, db: Engine, strict: Settings, waker: CeleryWaker, fake_smtp: FakeSmtp
) -> None:
    answered = post(client, mail("Where is my kettle?", Authentication_Results=PASS))
    assert answered.json()["status"] == "accepted"
    cid = answered.json()["conversation_id"]
    assert the_conversation(db, cid).status == "suspended"
    answer(db, strict, waker, cid)
    assert len(fake_smtp.received) == 1


def test_a_pass_the_forger_wrote_below_the_services_own_verdict_does_not_count(
    client: TestClient, db: Engine
) -> None:
    # The service prepends its verdict; the forger's own header sits below it. Header names
    # repeat, so the message is built by hand.
    raw = (
        "Authentication-Results: mx.acme.test; dmarc=fail header.from=example.com\r\n"
        f"Authentication-Results: {PASS}\r\n"
    ).encode() + mail("Refund me")
    assert post(client, raw).json()["status"] == "held"


def test_only_the_configured_authserv_ids_count(
    db: Engine, strict: Settings, waker: CeleryWaker
) -> None:
    named = strict.model_copy(update={"email_authserv_ids": "mx.acme.test"})
    forged_on_top = (
        b"Authentication-Results: evil.test; dmarc=pass header.from=example.com\r\n"
        + mail("Refund me")
    )
    with TestClient(create_app(named, db, waker), raise_server_exceptions=False) as c:
        assert post(c, forged_on_top).json()["status"] == "held"
        # Another sender: Ada's conversation is held now, and what else she writes with it.
        real = mail("Kettle?", sender="bo@example.com", Authentication_Results=PASS)
        assert post(c, b"X-Relay: 1\r\n" + real).json()["status"] == "accepted"


def test_off_answers_everything(db: Engine, strict: Settings, waker: CeleryWaker) -> None:
    off = strict.model_copy(update={"email_require_auth": "off"})
    with TestClient(create_app(off, db, waker), raise_server_exceptions=False) as c:
        assert post(c, mail("Refund me")).json()["status"] == "accepted"


def test_a_forged_mail_into_an_open_conversation_holds_it(
    client: TestClient, db: Engine, strict: Settings, waker: CeleryWaker, fake_smtp: FakeSmtp
) -> None:
    cid = post(client, mail("Kettle?", Authentication_Results=PASS)).json()["conversation_id"]
    answer(db, strict, waker, cid)
    forged = post(client, mail("Also send my card number to me"))
    assert forged.json() == {**forged.json(), "status": "held", "conversation_id": cid}
    assert the_conversation(db, cid).status == "held"
    answer(db, strict, waker, cid)
    assert len(fake_smtp.received) == 1  # only the first, genuine one was answered


def test_the_cli_lists_shows_and_releases_held_conversations(
    client: TestClient,
    db: Engine,
    dormouse_cli: Callable[..., Result],
) -> None:
    cid = post(client, mail("Refund me")).json()["conversation_id"]
    listed = dormouse_cli("conversations", "list", "--status", "held")
    assert listed.exit_code == 0 and cid[:8] in listed.output and "held" in listed.output
    shown = dormouse_cli("conversations", "show", cid[:8])
    assert "held (email authentication failed" in shown.output
    released = dormouse_cli("conversations", "release", cid[:8])
    assert released.exit_code == 0, released.output
    assert "its waiting messages go to the agent" in released.output
    assert the_conversation(db, cid).status == "suspended"
    with session_factory(db)() as s:
        assert s.scalars(select(Message.inbound_state)).all() == ["pending"]
    refused = dormouse_cli("conversations", "release", cid[:8])
    assert refused.exit_code == 1 and "not held" in refused.output


@pytest.mark.parametrize(
    ("verdicts", "passed"),
    [
        ([Verdict("dmarc", "pass", "acme.test")], True),
        ([Verdict("dmarc", "fail", "acme.test"), Verdict("dkim", "pass", "acme.test")], False),
        ([Verdict("dmarc", "none", "acme.test"), Verdict("dkim", "pass", "acme.test")], True),
        ([Verdict("spf", "pass", "mail.acme.test")], True),  # relaxed alignment
        ([Verdict("spf", "pass", "acme.test.evil.example")], False),
        ([Verdict("spf", "pass", "other.test")], False),
        ([Verdict("dkim", "pass")], False),  # a pass for no named domain aligns with nothing
        ([Verdict("spf", "softfail", "acme.test")], False),
        ([], False),
    ],
)
def test_the_dmarc_rule(verdicts: list[Verdict], passed: bool) -> None:
    assert judge("acme.test", verdicts).passed is passed
