"""Erasure leaves nothing of the customer: not in idempotency records, and a replayed
webhook of theirs brings nothing back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text, update

from agent.catalog import AgentCatalog
from api.app import create_app
from conversations.db import session_factory, transaction
from conversations.envelope import InboundMessage
from conversations.ingest import ingest
from conversations.models import (
    Base,
    Conversation,
    Customer,
    ErasedProviderId,
    IdempotencyKey,
    Message,
    OutboxRow,
)
from conversations.settings import Settings
from conversations.types import utcnow
from conversations.wakeup import TURN_QUEUE, CeleryWaker
from scheduler.tasks import purge_once
from tests.conftest import API_KEY, queued
from tests.test_chat_channel import SECRET as CHAT_SECRET
from tests.test_chat_channel import chat
from tests.test_chat_channel import post as post_chat
from tests.test_email_channel import mail
from tests.test_email_channel import post as post_mail
from tests.test_twilio_webhooks import count, signed, twilio_form
from workers.turn import run_turn

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PHONE = "+14155550177"
TEXT = "my door code is 4711-quokka"
MAIL_SECRET = "inbound-secret-for-tests"


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as c:
        yield c


def mentions(engine: Engine, *needles: str) -> list[str]:
    """The tables with a row whose text holds any of ``needles`` (every column, every row)."""
    found = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                if any(n in str(tuple(row)) for n in needles):
                    found.append(table.name)
                    break
    return found


def start_with_key(client: TestClient, key: str = "order-42", to: str = PHONE) -> dict[str, object]:
    payload = {"service": "s", "channel": "sms", "to": to, "message": TEXT}
    answer = client.post(
        "/v1/conversations", json=payload, headers={**AUTH, "Idempotency-Key": key}
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_erasure_takes_the_idempotency_records_of_what_the_customer_had(
    client: TestClient, db: Engine
) -> None:
    started = start_with_key(client)
    assert "idempotency_keys" in mentions(db, PHONE, TEXT)  # the answer copies both

    erased = client.delete(f"/v1/customers/{started['customer_id']}", headers=AUTH)

    assert erased.status_code == 204
    assert count(db, IdempotencyKey) == 0
    assert mentions(db, PHONE, TEXT) == []  # in no table at all


def test_idempotency_records_follow_a_merged_customer(client: TestClient, db: Engine) -> None:
    started = start_with_key(client)
    other = client.post("/v1/customers", json={"name": "Ada"}, headers=AUTH).json()
    merged = client.post(
        f"/v1/customers/{other['id']}/identities",
        json={"kind": "phone", "address": PHONE, "merge": True},
        headers=AUTH,
    )
    assert merged.status_code == 201, merged.text
    # The retry still gets the first answer: the record moved with the conversation.
    again = start_with_key(client)
    assert again["id"] == started["id"]

    assert client.delete(f"/v1/customers/{other['id']}", headers=AUTH).status_code == 204
    assert count(db, IdempotencyKey) == 0


def test_idempotency_records_expire_after_their_ttl(
    client: TestClient, db: Engine, settings: Settings
) -> None:
    assert settings.idempotency_key_ttl_delta == timedelta(hours=24)
    first = start_with_key(client, key="old")
    start_with_key(client, key="recent", to="+14155550178")
    with session_factory(db)() as s, s.begin():
        s.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "old")
            .values(created_at=utcnow() - timedelta(hours=25))
        )
    # Past its TTL a key is not replayed: the same key and body act anew (and are refused
    # here, since the first conversation is still open).
    reused = client.post(
        "/v1/conversations",
        json={"service": "s", "channel": "sms", "to": PHONE, "message": TEXT},
        headers={**AUTH, "Idempotency-Key": "old"},
    )
    assert reused.status_code == 409 and "idempotent-replayed" not in reused.headers
    assert reused.json()["conversation_id"] == first["id"]
    with session_factory(db)() as s, s.begin():
        s.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))

    purged = purge_once(db, settings)

    assert purged["idempotency_keys"] == 2
    assert count(db, IdempotencyKey) == 0


def test_a_replayed_webhook_after_erasure_is_a_duplicate_and_creates_nothing(
    client: TestClient, db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    sid = "SM" + "7" * 32
    captured = twilio_form(TEXT, sid=sid, From=PHONE)
    headers = signed(captured)
    assert client.post("/webhooks/twilio/sms", data=captured, headers=headers).status_code == 200
    with session_factory(db)() as s:
        conversation = s.scalars(select(Conversation)).one()
    run_turn(conversation.id, engine=db, agents=AgentCatalog(), settings=settings, waker=waker)
    assert count(db, OutboxRow) == 1  # it was answered
    assert client.delete(f"/v1/customers/{conversation.customer_id}", headers=AUTH).status_code
    assert count(db, Customer) == 0
    waiting = len(queued(settings.effective_broker_url, TURN_QUEUE))

    replayed = client.post("/webhooks/twilio/sms", data=captured, headers=headers)

    assert replayed.status_code == 200
    assert replayed.text.endswith("<Response/>")  # what a retried webhook gets
    assert all(count(db, m) == 0 for m in (Customer, Conversation, Message, OutboxRow))
    assert len(queued(settings.effective_broker_url, TURN_QUEUE)) == waiting  # no turn woken
    # What is kept is a digest: neither the id, nor the number, nor the text.
    assert count(db, ErasedProviderId) == 1
    assert mentions(db, sid, PHONE, TEXT) == []
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM erased_provider_ids")).scalar() == 1


def test_a_new_message_from_an_erased_number_is_a_new_customer(
    client: TestClient, db: Engine
) -> None:
    first = twilio_form("before", sid="SM" + "1" * 32, From=PHONE)
    client.post("/webhooks/twilio/sms", data=first, headers=signed(first))
    with session_factory(db)() as s:
        customer_id = s.scalars(select(Customer.id)).one()
    client.delete(f"/v1/customers/{customer_id}", headers=AUTH)

    later = twilio_form("after", sid="SM" + "2" * 32, From=PHONE)
    assert client.post("/webhooks/twilio/sms", data=later, headers=signed(later)).status_code == 200

    with session_factory(db)() as s:
        assert s.scalars(select(Message.body)).all() == ["after"]
        assert s.scalars(select(Customer.id)).one() != customer_id


def test_replayed_mail_and_chat_after_erasure_are_duplicates_too(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    both = settings.model_copy(
        update={"chat_webhook_secret": CHAT_SECRET, "email_inbound_secret": MAIL_SECRET}
    )
    raw = mail(TEXT, sender="Grace <grace@example.org>")
    message = chat(TEXT, user_id="U0GRACE")
    with TestClient(create_app(both, db, waker), raise_server_exceptions=False) as client:
        assert post_mail(client, raw, secret=MAIL_SECRET).json()["status"] == "accepted"
        assert post_chat(client, message, secret=CHAT_SECRET).json()["status"] == "accepted"
        with session_factory(db)() as s:
            customers = s.scalars(select(Customer.id)).all()
        for customer_id in customers:
            assert client.delete(f"/v1/customers/{customer_id}", headers=AUTH).status_code == 204

        again_mail = post_mail(client, raw, secret=MAIL_SECRET)
        again_chat = post_chat(client, message, secret=CHAT_SECRET)

    assert (again_mail.status_code, again_mail.json()["status"]) == (200, "duplicate")
    assert again_chat.json() == {"status": "duplicate", "conversation_id": None}
    assert all(count(db, m) == 0 for m in (Customer, Conversation, Message, OutboxRow))
    assert count(db, ErasedProviderId) == 2


def test_a_live_idempotency_key_of_an_erased_message_is_refused_not_a_500(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    said = InboundMessage(channel="chat", provider_id="live:k1", sender="U0ADA", text=TEXT)
    with transaction(db) as session:
        first = ingest(
            session,
            said,
            service="default",
            now=utcnow(),
            defaults=settings.default_policies(),
            help_text=settings.help_text,
        )
    with session_factory(db)() as s:
        erased = s.get_one(Conversation, first.conversation_id).customer_id
    chatting = settings.model_copy(update={"chat_webhook_secret": CHAT_SECRET})
    with TestClient(create_app(chatting, db, waker), raise_server_exceptions=False) as client:
        assert client.delete(f"/v1/customers/{erased}", headers=AUTH).status_code == 204
        back = post_chat(client, chat("hello again", user_id="U0ADA"), secret=CHAT_SECRET)
        cid = back.json()["conversation_id"]

        reused = client.post(
            f"/v1/chat/conversations/{cid}/interact",
            json={"text": "and now?"},
            headers={**AUTH, "Idempotency-Key": "k1"},
        )

    assert reused.status_code == 409 and "erased" in reused.json()["detail"]
