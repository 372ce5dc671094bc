"""Inbound SMS webhook and status callbacks over HTTP, against the real database and broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from twilio.request_validator import RequestValidator

from api.app import create_app
from conversations.db import session_factory
from conversations.models import Conversation, Message
from conversations.settings import Settings
from conversations.wakeup import TURN_QUEUE, TURN_TASK, CeleryWaker
from tests.conftest import API_KEY, AUTH_TOKEN, queued

SMS_URL = "http://dormouse.test/webhooks/twilio/sms"


def twilio_form(body: str = "hello", sid: str = "SM" + "a" * 32, **extra: str) -> dict[str, str]:
    form = {
        "MessageSid": sid,
        "AccountSid": "AC" + "1" * 32,
        "From": "+1 (415) 555-0100",
        "To": "+15550006666",
        "Body": body,
        "NumMedia": "0",
    }
    form.update(extra)
    return form


def signed(form: dict[str, str], url: str = SMS_URL, token: str = AUTH_TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as c:
        yield c


def count(engine: Engine, model: type) -> int:
    with session_factory(engine)() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_signed_sms_is_committed_woken_and_answered_with_empty_twiml(
    client: TestClient, db: Engine, settings: Settings
) -> None:
    form = twilio_form("hi there", MediaUrl0="https://media.example/1.jpg", NumMedia="1")
    headers = {**signed(form), "I-Twilio-Idempotency-Token": "idem-1"}
    response = client.post("/webhooks/twilio/sms", data=form, headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert response.text.endswith("<Response/>")
    with session_factory(db)() as s:
        message = s.scalars(select(Message)).one()
        conversation = s.get_one(Conversation, message.conversation_id)
    assert (message.body, message.address, message.inbound_state) == (
        "hi there",
        "+14155550100",
        "pending",
    )
    assert message.media == ["https://media.example/1.jpg"]
    assert message.idempotency_token == "idem-1"
    assert conversation.status == "suspended" and conversation.channel == "sms"
    assert queued(settings.effective_broker_url, TURN_QUEUE) == [
        (TURN_TASK, [str(conversation.id)])
    ]


def test_retried_webhook_changes_nothing_and_still_answers_200(
    client: TestClient, db: Engine
) -> None:
    form = twilio_form("once")
    for _ in range(3):
        assert (
            client.post("/webhooks/twilio/sms", data=form, headers=signed(form)).status_code == 200
        )
    assert count(db, Message) == 1
    assert count(db, Conversation) == 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}],
    ids=["missing", "wrong"],
)
def test_bad_signature_is_403_and_stores_nothing(
    client: TestClient, db: Engine, headers: dict[str, str]
) -> None:
    response = client.post("/webhooks/twilio/sms", data=twilio_form(), headers=headers)
    assert response.status_code == 403
    assert "X-Twilio-Signature" in response.json()["detail"]
    assert count(db, Message) == 0


def test_signature_with_another_token_or_url_is_refused(client: TestClient, db: Engine) -> None:
    form = twilio_form()
    for headers in (signed(form, token="other-token"), signed(form, url="http://evil.test/x")):
        assert client.post("/webhooks/twilio/sms", data=form, headers=headers).status_code == 403
    assert count(db, Message) == 0


def test_form_without_required_field_is_400_naming_it(client: TestClient, db: Engine) -> None:
    form = twilio_form()
    del form["From"]
    response = client.post("/webhooks/twilio/sms", data=form, headers=signed(form))
    assert response.status_code == 400
    assert "From" in response.json()["detail"]
    assert count(db, Message) == 0


def test_unparseable_sender_number_is_400_naming_it(client: TestClient, db: Engine) -> None:
    form = twilio_form(From="not-a-number")
    response = client.post("/webhooks/twilio/sms", data=form, headers=signed(form))
    assert response.status_code == 400
    assert "From" in response.json()["detail"]
    assert count(db, Conversation) == 0


def test_unsigned_requests_are_403_whatever_the_body(client: TestClient, db: Engine) -> None:
    for kwargs in ({"content": b"\xff\xfe"}, {"json": {"Body": "x"}}, {"content": b""}):
        assert client.post("/webhooks/twilio/sms", **kwargs).status_code == 403
    assert count(db, Message) == 0


def test_signed_but_unreadable_bodies_are_400_or_415(client: TestClient, db: Engine) -> None:
    sig = {"X-Twilio-Signature": "c2lnbmVk"}
    form = {"Content-Type": "application/x-www-form-urlencoded", **sig}
    assert client.post("/webhooks/twilio/sms", content=b"\xff\xfe", headers=form).status_code == 400
    assert client.post("/webhooks/twilio/sms", json={"Body": "x"}, headers=sig).status_code == 415
    assert count(db, Message) == 0


def test_oversize_body_is_413(client: TestClient, db: Engine, settings: Settings) -> None:
    form = twilio_form("x" * (settings.max_webhook_bytes + 1))
    response = client.post("/webhooks/twilio/sms", data=form, headers=signed(form))
    assert response.status_code == 413
    assert count(db, Message) == 0


def test_broker_down_still_accepts_and_keeps_the_message(db: Engine, settings: Settings) -> None:
    dead = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(dead, db, CeleryWaker(settings=dead))) as client:
        form = twilio_form("while the broker is down")
        response = client.post("/webhooks/twilio/sms", data=form, headers=signed(form))
    assert response.status_code == 200
    with session_factory(db)() as s:
        assert s.scalars(select(Message.inbound_state)).all() == ["pending"]


def test_database_down_answers_503_so_twilio_retries(settings: Settings, db: Engine) -> None:
    from conversations.db import make_engine

    down = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with TestClient(create_app(settings, down, CeleryWaker(settings=settings))) as client:
        form = twilio_form()
        response = client.post("/webhooks/twilio/sms", data=form, headers=signed(form))
    assert response.status_code == 503
    assert response.headers["retry-after"]


def test_status_callbacks_are_deduplicated_and_never_move_backwards(
    client: TestClient, db: Engine
) -> None:
    from conversations import outbox
    from conversations.db import transaction
    from conversations.states import Role
    from conversations.types import utcnow
    from tests.factories import ingest_sms

    conversation_id = ingest_sms(db, "hi").conversation_id
    with transaction(db) as s:
        outbox.enqueue_reply(
            s,
            conversation_id=conversation_id,
            channel="sms",
            to="+14155550100",
            text="reply",
            role=Role.AGENT,
            turn=1,
            now=utcnow(),
        )
        s.execute(
            Message.__table__.update()
            .where(Message.direction == "outbound")
            .values(provider_id="SM" + "b" * 32, delivery_status="queued")
        )
    url = "http://dormouse.test/webhooks/twilio/status"
    for status in ("sent", "delivered", "sent", "delivered"):
        form = {"MessageSid": "SM" + "b" * 32, "MessageStatus": status}
        assert (
            client.post("/webhooks/twilio/status", data=form, headers=signed(form, url)).status_code
            == 200
        )
    with session_factory(db)() as s:
        assert (
            s.scalar(select(Message.delivery_status).where(Message.direction == "outbound"))
            == "delivered"
        )

    # Statuses we do not rank are recorded, not refused, and never a 500.
    partial = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "partially_delivered"}
    assert (
        client.post(
            "/webhooks/twilio/status", data=partial, headers=signed(partial, url)
        ).status_code
        == 200
    )
    long = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "x" * 40}
    assert (
        client.post("/webhooks/twilio/status", data=long, headers=signed(long, url)).status_code
        == 400
    )

    bad = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "failed"}
    assert client.post("/webhooks/twilio/status", data=bad).status_code == 403


def test_operator_api_needs_a_key_and_shows_conversations(client: TestClient, db: Engine) -> None:
    form = twilio_form("show me")
    client.post("/webhooks/twilio/sms", data=form, headers=signed(form))

    assert client.get("/v1/conversations").status_code == 401
    assert (
        client.get("/v1/conversations", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    auth = {"Authorization": f"Bearer {API_KEY}"}
    listed = client.get("/v1/conversations", params={"address": "(415) 555-0100"}, headers=auth)
    assert listed.status_code == 200
    [summary] = listed.json()
    assert summary["status"] == "suspended" and summary["address"] == "+14155550100"
    assert client.get("/v1/conversations", params={"status": "finished"}, headers=auth).json() == []

    detail = client.get(f"/v1/conversations/{summary['id']}", headers=auth).json()
    assert [(m["direction"], m["role"], m["body"]) for m in detail["messages"]] == [
        ("inbound", "customer", "show me")
    ]
    bad = client.get("/v1/conversations", params={"status": "sleeping"}, headers=auth)
    assert bad.status_code == 422
    missing = client.get("/v1/conversations/00000000-0000-0000-0000-000000000000", headers=auth)
    assert missing.status_code == 404


def test_health_and_readiness_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"database": "ok", "broker": "ok"}
