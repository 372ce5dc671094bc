"""The email channel end to end in one process: webhook → turn → SMTP (a real aiosmtpd server)
→ the customer's reply threads back into the same conversation. Real database and broker."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from agent.catalog import AgentCatalog
from api.app import create_app
from conversations.db import session_factory
from conversations.models import Conversation, Customer, Identity, Message, OutboxRow
from conversations.settings import Settings
from conversations.types import utcnow
from conversations.wakeup import TURN_QUEUE, CeleryWaker
from tests.conftest import API_KEY, SUPPORT, queued
from tests.fakes.smtp_server import FakeSmtp
from workers.deliver import deliver, reconcile
from workers.turn import run_turn
from workers.turn_store import rehydrate

CORPUS = Path(__file__).parent / "email_corpus"


@pytest.fixture
def mailgun(db: Engine, mail_settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    """An API whose operator set MAILGUN_SIGNING_KEY."""
    signed = mail_settings.model_copy(update={"mailgun_signing_key": "mailgun-key-for-tests"})
    with TestClient(create_app(signed, db, waker), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def client(db: Engine, mail_settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(mail_settings, db, waker), raise_server_exceptions=False) as c:
        yield c


def mail(
    text: str,
    *,
    sender: str = "Ada <ada@example.com>",
    to: str = "support@acme.test",
    subject: str = "Kettle",
    in_reply_to: str | None = None,
    message_id: str | None = None,
    **headers: str,
) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, subject
    m["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@example.com>"
    if in_reply_to:
        m["In-Reply-To"] = m["References"] = in_reply_to
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(text)
    return bytes(m)


def post(client: TestClient, raw: bytes, secret: str = "inbound-secret-for-tests"):  # type: ignore[no-untyped-def]
    return client.post(
        "/webhooks/email",
        content=raw,
        headers={"Content-Type": "message/rfc822", "Authorization": f"Bearer {secret}"},
    )


def answer(db: Engine, settings: Settings, waker: CeleryWaker, conversation_id: str) -> None:
    """Run the turn the webhook woke, and deliver what it wrote."""
    run_turn(
        uuid.UUID(conversation_id), engine=db, agents=AgentCatalog(), settings=settings, waker=waker
    )
    for outbox_id in pending_outbox(db):
        deliver(outbox_id, engine=db, settings=settings)


def pending_outbox(db: Engine) -> list[int]:
    with session_factory(db)() as s:
        return list(s.scalars(select(OutboxRow.id).where(OutboxRow.status == "pending")))


def conversations(db: Engine) -> list[Conversation]:
    with session_factory(db)() as s:
        return list(s.scalars(select(Conversation).order_by(Conversation.created_at)))


def messages(db: Engine, conversation_id: str) -> list[Message]:
    with session_factory(db)() as s:
        return list(
            s.scalars(
                select(Message)
                .where(Message.conversation_id == uuid.UUID(conversation_id))
                .order_by(Message.id)
            )
        )


def test_a_reply_goes_out_over_smtp_threaded_and_the_answer_continues_the_conversation(
    client: TestClient,
    db: Engine,
    mail_settings: Settings,
    waker: CeleryWaker,
    fake_smtp: FakeSmtp,
) -> None:
    first = post(client, mail("Where is my kettle?", message_id="<q1@example.com>"))
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    cid = first.json()["conversation_id"]
    answer(db, mail_settings, waker, cid)

    [sent] = fake_smtp.received
    reply = sent.message
    assert sent.rcpt_tos == ["ada@example.com"]
    assert sent.mail_from == "support@acme.test"
    assert reply["From"] == SUPPORT and reply["To"] == "ada@example.com"
    assert reply["Subject"] == "Re: Kettle"
    assert reply["In-Reply-To"] == "<q1@example.com>"
    assert reply["References"] == "<q1@example.com>"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Message-ID"].endswith("@acme.test>")
    plain = reply.get_body(("plain",)).get_content()
    html = reply.get_body(("html",)).get_content()
    assert "Where is my kettle?" in plain and "<p>" in html and "Where is my kettle?" in html
    outbound = [m for m in messages(db, cid) if m.direction == "outbound"]
    assert outbound[0].provider_id == reply["Message-ID"].strip("<>")

    # The customer answers from another mail client: quoted text, no References, only the
    # In-Reply-To naming our Message-ID. Same conversation, and only the new part is kept.
    quoted = "Thanks!\n\nOn Mon, Acme Support <support@acme.test> wrote:\n> old text\n"
    second = post(client, mail(quoted, subject="Re: Kettle", in_reply_to=reply["Message-ID"]))
    assert second.json()["conversation_id"] == cid
    assert messages(db, cid)[-1].body == "Thanks!"
    answer(db, mail_settings, waker, cid)
    again = fake_smtp.received[-1].message
    assert again["Subject"] == "Re: Kettle"
    parent = f"<{messages(db, cid)[-2].provider_id}>"  # the customer's "Thanks!"
    assert again["In-Reply-To"] == parent
    assert again["References"].split() == [reply["Message-ID"], parent]


def test_a_retried_webhook_changes_nothing(client: TestClient, db: Engine) -> None:
    raw = mail("hello", message_id="<same@example.com>")
    first, again = post(client, raw), post(client, raw)
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    assert first.json()["conversation_id"] == again.json()["conversation_id"]
    assert len(messages(db, first.json()["conversation_id"])) == 1


def test_the_service_comes_from_the_recipient_address(client: TestClient, db: Engine) -> None:
    sales = post(client, mail("a quote please", to="Sales <Sales@acme.test>"))
    support = post(client, mail("it broke", sender="bob@example.com"))
    services = {c.id.hex: c.service for c in conversations(db)}
    assert services[uuid.UUID(sales.json()["conversation_id"]).hex] == "sales"
    assert services[uuid.UUID(support.json()["conversation_id"]).hex] == "default"


def test_a_reply_to_a_finished_conversation_opens_a_new_one(
    client: TestClient, db: Engine, mail_settings: Settings, waker: CeleryWaker
) -> None:
    cid = post(client, mail("hi", message_id="<a@example.com>")).json()["conversation_id"]
    client.post(f"/v1/conversations/{cid}/finish", headers={"Authorization": f"Bearer {API_KEY}"})
    later = post(client, mail("me again", in_reply_to="<a@example.com>"))
    assert later.json()["conversation_id"] != cid


def test_a_stranger_replying_into_someones_thread_gets_their_own_conversation(
    client: TestClient, db: Engine
) -> None:
    cid = post(client, mail("hi", message_id="<ada1@example.com>")).json()["conversation_id"]
    intruder = post(
        client, mail("let me in", sender="eve@example.com", in_reply_to="<ada1@example.com>")
    )
    assert intruder.json()["conversation_id"] != cid


def test_an_out_of_office_reply_is_recorded_and_never_answered(
    client: TestClient, db: Engine, mail_settings: Settings, waker: CeleryWaker
) -> None:
    cid = post(client, mail("hi")).json()["conversation_id"]
    answer(db, mail_settings, waker, cid)
    ours = messages(db, cid)[-1].provider_id
    ooo = (CORPUS / "out_of_office.eml").read_bytes()
    ooo = ooo.replace(b"<OUR-FIRST-REPLY@acme.test>", f"<{ours}>".encode())
    response = post(client, ooo)
    assert response.json() == {
        "status": "recorded",
        "conversation_id": cid,
        "automatic": "Auto-Submitted: auto-replied",
    }
    recorded = messages(db, cid)[-1]
    assert (recorded.role, recorded.inbound_state) == ("system", "ignored")
    assert conversations(db)[0].last_activity_at < recorded.created_at  # deadline unmoved
    assert queued(mail_settings.broker_url, TURN_QUEUE)[1:] == []  # woke no turn
    with session_factory(db)() as s:
        snapshot = rehydrate(s, uuid.UUID(cid), window=20)
    assert "system" not in [m.role for m in snapshot.history]  # never shown to the agent


def test_automatic_mail_about_nothing_of_ours_is_ignored_and_creates_no_customer(
    client: TestClient, db: Engine
) -> None:
    response = post(client, mail("sale!", sender="noreply@shop.example"))
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    with session_factory(db)() as s:
        assert s.scalar(select(func.count()).select_from(Identity)) == 0


def test_a_stranger_cannot_pose_as_a_bounce_or_auto_reply_about_someone_else(
    client: TestClient, db: Engine, mail_settings: Settings, waker: CeleryWaker
) -> None:
    cid = post(client, mail("hi", sender="victim@example.com")).json()["conversation_id"]
    answer(db, mail_settings, waker, cid)
    ours = messages(db, cid)[-1].provider_id
    forged = (CORPUS / "bounce.eml").read_bytes()
    forged = forged.replace(b"<OUR-FIRST-REPLY@acme.test>", f"<{ours}>".encode())
    forged = forged.replace(b"gone@example.com", b"someone-else@example.com")
    assert post(client, forged).json()["status"] == "ignored"
    fake_ooo = mail(
        "I am away",
        sender="eve@example.com",
        in_reply_to=f"<{ours}>",
        Auto_Submitted="auto-replied",
    )
    assert post(client, fake_ooo).json()["status"] == "ignored"
    assert len(messages(db, cid)) == 2
    with session_factory(db)() as s:
        assert s.scalars(select(Identity.undeliverable_at)).all() == [None]


def test_hostile_headers_and_bytes_are_cleaned_not_a_500(
    client: TestClient,
    db: Engine,
    mail_settings: Settings,
    waker: CeleryWaker,
    fake_smtp: FakeSmtp,
) -> None:
    raw = (
        b"From: ada@example.com\r\nSubject: =?utf-8?q?Hello=0D=0ABcc:_v@x.com?=\r\n"
        b"Content-Type: text/plain; charset=base64\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nhi=00there\r\n"
    )
    response = post(client, raw)
    assert response.status_code == 200, response.text
    cid = response.json()["conversation_id"]
    assert messages(db, cid)[0].body == "hithere"
    answer(db, mail_settings, waker, cid)
    [sent] = fake_smtp.received
    assert sent.message["Subject"] == "Re: Hello Bcc: v@x.com" and sent.rcpt_tos == [
        "ada@example.com"
    ]
    nul_sender = post(client, b"From: a\x00@example.com\r\n\r\nbody\r\n")
    assert nul_sender.status_code == 400


def test_a_bounce_marks_the_address_undeliverable_until_the_customer_writes_again(
    client: TestClient,
    db: Engine,
    mail_settings: Settings,
    waker: CeleryWaker,
    fake_smtp: FakeSmtp,
) -> None:
    cid = post(client, mail("hi", sender="gone@example.com")).json()["conversation_id"]
    answer(db, mail_settings, waker, cid)
    ours = fake_smtp.received[0].message["Message-ID"]
    bounce = (
        (CORPUS / "bounce.eml").read_bytes().replace(b"<OUR-FIRST-REPLY@acme.test>", ours.encode())
    )
    assert post(client, bounce).json()["conversation_id"] == cid  # recorded on it

    # The next reply to that address is refused visibly instead of bouncing again.
    with session_factory(db)() as s:
        from conversations import outbox
        from conversations.states import Role
        from conversations.types import utcnow

        oid = outbox.enqueue_reply(
            s,
            conversation_id=uuid.UUID(cid),
            channel="email",
            to="gone@example.com",
            text="still there?",
            role=Role.AGENT,
            turn=None,
            now=utcnow(),
        )
        s.commit()
    assert deliver(oid, engine=db, settings=mail_settings) == "failed"
    assert len(fake_smtp.received) == 1
    with session_factory(db)() as s:
        assert "bounced" in (s.get_one(OutboxRow, oid).last_error or "")

    # Writing again proves the address works: replies flow again.
    post(client, mail("new address works now", sender="gone@example.com"))
    answer(db, mail_settings, waker, cid)
    assert len(fake_smtp.received) == 2


def test_a_bounce_from_an_empty_sender_is_recorded_and_a_person_without_one_refused(
    client: TestClient,
    db: Engine,
    mail_settings: Settings,
    waker: CeleryWaker,
    fake_smtp: FakeSmtp,
) -> None:
    cid = post(client, mail("hi", sender="gone@example.com")).json()["conversation_id"]
    answer(db, mail_settings, waker, cid)
    ours = fake_smtp.received[0].message["Message-ID"]
    bounce = (
        (CORPUS / "bounce.eml")
        .read_bytes()
        .replace(b"<OUR-FIRST-REPLY@acme.test>", ours.encode())
        .replace(b"Mail Delivery Subsystem <MAILER-DAEMON@mx.example.com>", b"MAILER-DAEMON <>")
    )
    recorded = post(client, bounce)
    assert recorded.status_code == 200, recorded.text  # a 400 is retried for days
    assert recorded.json()["conversation_id"] == cid
    with session_factory(db)() as s:  # nothing answers it, nobody became a customer from it
        assert s.scalars(select(func.count()).select_from(Customer)).one() == 1

    nobody = mail("who am I", sender="<>")
    assert post(client, nobody).status_code == 400


def reply_waiting(client: TestClient, db: Engine, settings: Settings, waker: CeleryWaker) -> int:
    """A customer's mail answered by a turn: the outbox row of the reply, not yet sent."""
    cid = post(client, mail("hi")).json()["conversation_id"]
    run_turn(uuid.UUID(cid), engine=db, agents=AgentCatalog(), settings=settings, waker=waker)
    [oid] = pending_outbox(db)
    return oid


def test_smtp_refusals_fail_or_retry_by_their_code(
    client: TestClient,
    db: Engine,
    mail_settings: Settings,
    waker: CeleryWaker,
    fake_smtp: FakeSmtp,
) -> None:
    oid = reply_waiting(client, db, mail_settings, waker)
    fake_smtp.set_mode("defer")
    assert deliver(oid, engine=db, settings=mail_settings) == "pending"  # 451: try later
    fake_smtp.set_mode("reject")
    with session_factory(db)() as s:
        s.get_one(OutboxRow, oid).next_attempt_at = s.get_one(OutboxRow, oid).created_at
        s.commit()
    assert deliver(oid, engine=db, settings=mail_settings) == "failed"  # 550: never
    with session_factory(db)() as s:
        assert "SMTP 550" in (s.get_one(OutboxRow, oid).last_error or "")
    assert fake_smtp.received == []


def test_no_answer_to_end_of_data_is_reconciled_by_a_resend_with_the_same_message_id(
    client: TestClient,
    db: Engine,
    mail_settings: Settings,
    waker: CeleryWaker,
    fake_smtp: FakeSmtp,
) -> None:
    oid = reply_waiting(client, db, mail_settings, waker)
    fake_smtp.set_mode("hang")  # takes the message, never answers within SMTP_TIMEOUT
    assert deliver(oid, engine=db, settings=mail_settings) == "sending"
    with session_factory(db)() as s:
        assert s.get_one(OutboxRow, oid).status == "sending"  # not failed, not resent

    fake_smtp.set_mode("ok")
    # Past the reconcile window: SMTP cannot be asked, so the row goes back for a resend.
    assert reconcile(oid, engine=db, settings=mail_settings, clock=later(20)) == "pending"
    assert deliver(oid, engine=db, settings=mail_settings, clock=later(30)) == "sent"
    first, resent = fake_smtp.received
    assert first.message["Message-ID"] == resent.message["Message-ID"]


def later(seconds: float) -> Callable[[], datetime]:
    return lambda: utcnow() + timedelta(seconds=seconds)


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"sendgrid:{secret}".encode()).decode()}


def test_sendgrid_raw_posts_are_accepted_with_the_secret_as_basic_password(
    client: TestClient, db: Engine
) -> None:
    raw = (CORPUS / "iso_8859_1.eml").read_bytes()
    files = {"email": (None, raw), "to": (None, b"support@acme.test"), "charsets": (None, b"{}")}
    response = client.post("/webhooks/email", files=files, headers=auth("inbound-secret-for-tests"))
    assert response.status_code == 200, response.text
    [message] = messages(db, response.json()["conversation_id"])
    assert "arrivée" in message.body  # byte-exact through the form: Latin-1 survives


def test_a_sendgrid_envelope_too_deep_to_decode_is_ignored_not_a_500(
    client: TestClient, db: Engine
) -> None:
    files = {"email": (None, mail("hi")), "envelope": (None, b"[" * 30_000)}
    response = client.post("/webhooks/email", files=files, headers=auth("inbound-secret-for-tests"))
    assert response.status_code == 200 and response.json()["status"] == "accepted"


def mailgun_form(raw: bytes, key: str = "mailgun-key-for-tests", **override: str) -> dict:
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    fields = {"timestamp": timestamp, "token": token, "signature": signature, **override}
    return {"body-mime": (None, raw), **{k: (None, v.encode()) for k, v in fields.items()}}


def test_mailgun_posts_are_signature_checked_and_a_replay_is_refused(
    mailgun: TestClient, db: Engine
) -> None:
    headers = auth("inbound-secret-for-tests")
    form = mailgun_form(mail("hello from mailgun"))
    first = mailgun.post("/webhooks/email/mime", files=form, headers=headers)
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    # Mailgun retrying the same delivery: stored already, so a 200 and nothing new.
    retried = mailgun.post("/webhooks/email/mime", files=form, headers=headers)
    assert (retried.status_code, retried.json()["status"]) == (200, "duplicate")
    # The same signed token carrying another message is a replay.
    replay = {**form, "body-mime": (None, mail("injected"))}
    replayed = mailgun.post("/webhooks/email/mime", files=replay, headers=headers)
    assert replayed.status_code == 403 and "replay" in replayed.json()["detail"]

    forged = mailgun_form(mail("forged"), key="not-the-key")
    assert mailgun.post("/webhooks/email/mime", files=forged, headers=headers).status_code == 403
    stale = mailgun_form(mail("old"), timestamp=str(int(time.time()) - 3600))
    response = mailgun.post("/webhooks/email/mime", files=stale, headers=headers)
    assert response.status_code == 403  # the HMAC no longer matches, or the age is refused
    unsigned = mailgun.post(
        "/webhooks/email",
        content=mail("raw"),
        headers={"Content-Type": "message/rfc822", **headers},
    )
    assert unsigned.status_code == 403 and "MAILGUN_SIGNING_KEY" in unsigned.json()["detail"]
    assert len(conversations(db)) == 1


def test_mailgun_url_encoded_posts_keep_the_raw_bytes(mailgun: TestClient, db: Engine) -> None:
    raw = (CORPUS / "iso_8859_1.eml").read_bytes()
    fields = {k: v[1] for k, v in mailgun_form(raw).items()}
    response = mailgun.post(
        "/webhooks/email/mime",
        content=urlencode(fields).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            **auth("inbound-secret-for-tests"),
        },
    )
    assert response.status_code == 200, response.text
    [message] = messages(db, response.json()["conversation_id"])
    assert "arrivée" in message.body


def test_the_envelope_recipient_chooses_the_service_for_bcc_mail(
    client: TestClient, db: Engine
) -> None:
    files = {
        "email": (None, mail("quote?", to="someone@else.example")),
        "envelope": (None, b'{"to": ["sales@acme.test"], "from": "ada@example.com"}'),
    }
    response = client.post("/webhooks/email", files=files, headers=auth("inbound-secret-for-tests"))
    assert response.status_code == 200, response.text
    assert [c.service for c in conversations(db)] == ["sales"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        (auth("wrong"), 403),
    ],
)
def test_without_the_inbound_secret_nothing_is_stored(
    client: TestClient, db: Engine, headers: dict[str, str], status: int
) -> None:
    response = client.post(
        "/webhooks/email", content=mail("hi"), headers={"Content-Type": "message/rfc822", **headers}
    )
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")
    assert conversations(db) == []


def test_bad_bodies_get_a_4xx_naming_the_problem(
    client: TestClient, db: Engine, mail_settings: Settings
) -> None:
    bearer = {"Authorization": "Bearer inbound-secret-for-tests"}
    too_big = client.post(
        "/webhooks/email",
        content=b"x" * (mail_settings.email_max_bytes + 1),
        headers={"Content-Type": "message/rfc822", **bearer},
    )
    assert too_big.status_code == 413
    json_body = client.post("/webhooks/email", json={"a": 1}, headers=bearer)
    assert json_body.status_code == 415 and "message/rfc822" in json_body.json()["detail"]
    no_field = client.post("/webhooks/email", files={"other": (None, b"x")}, headers=bearer)
    assert no_field.status_code == 400 and "body-mime" in no_field.json()["detail"]
    garbage = post(client, b"\x00\x01 not mail")
    assert garbage.status_code == 400
    assert conversations(db) == []


def test_an_outbound_email_conversation_starts_with_its_subject_and_continues_by_reply(
    client: TestClient,
    db: Engine,
    mail_settings: Settings,
    waker: CeleryWaker,
    fake_smtp: FakeSmtp,
) -> None:
    started = client.post(
        "/v1/conversations",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={
            "service": "billing",
            "channel": "email",
            "to": "Grace@Example.org",
            "context": {"subject": "Your invoice"},
            "message": "Your invoice is ready.",
        },
    )
    assert started.status_code == 201, started.text
    cid = started.json()["id"]
    for outbox_id in pending_outbox(db):
        deliver(outbox_id, engine=db, settings=mail_settings)
    [sent] = fake_smtp.received
    assert sent.rcpt_tos == ["grace@example.org"]
    assert sent.message["Subject"] == "Your invoice"
    assert sent.message["Auto-Submitted"] == "auto-generated"  # RFC 3834: not a reply
    assert sent.message["In-Reply-To"] is None

    answer_mail = mail(
        "Thanks, paid.",
        sender="grace@example.org",
        subject="Re: Your invoice",
        in_reply_to=sent.message["Message-ID"],
    )
    assert post(client, answer_mail).json()["conversation_id"] == cid
