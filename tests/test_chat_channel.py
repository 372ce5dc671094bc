"""The chat channel end to end in one process: a Standard Webhooks-signed post → a turn → a
signed callback to a real local receiver (tests/fakes/chat_receiver.py). Real database and
broker; the receiver verifies signatures with the standardwebhooks package."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update

from agent.catalog import AgentCatalog
from api.app import create_app
from conversations.db import session_factory, transaction
from conversations.models import Conversation, Message, OutboxRow
from conversations.settings import Settings
from conversations.standard_webhooks import sign
from conversations.types import utcnow
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY
from tests.factories import ingest_sms
from tests.fakes.chat_receiver import ChatReceiver
from workers.deliver import deliver, reconcile
from workers.turn import run_turn

SECRET = "whsec_" + base64.b64encode(b"chat-secret-for-tests-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"not-the-secret-dormouse-knows!!!").decode()
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def receiver() -> Iterator[ChatReceiver]:
    server = ChatReceiver(SECRET, hang_seconds=1.5).start()
    yield server
    server.stop()


@pytest.fixture
def chat_settings(settings: Settings, receiver: ChatReceiver) -> Settings:
    return settings.model_copy(
        update={
            "chat_webhook_secret": SECRET,
            "chat_callback_url": receiver.url,
            "chat_http_timeout": 0.5,
        }
    )


@pytest.fixture
def client(db: Engine, chat_settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(chat_settings, db, waker), raise_server_exceptions=False) as c:
        yield c


def post(
    client: TestClient,
    payload: dict[str, Any] | None = None,
    *,
    raw: str | None = None,
    secret: str = SECRET,
    at: float | None = None,
    webhook_id: str | None = None,
) -> Any:
    body = raw if raw is not None else json.dumps(payload)
    headers = sign(secret, webhook_id or f"wh_{uuid.uuid4().hex}", body, now=at)
    return client.post(
        "/webhooks/chat", content=body, headers={**headers, "content-type": "application/json"}
    )


def chat(text: str = "hello from chat", user_id: str = "U024BE7LH", **more: Any) -> dict[str, Any]:
    return {"id": f"chat-{uuid.uuid4().hex}", "user_id": user_id, "text": text, **more}


def answer(db: Engine, settings: Settings, waker: CeleryWaker, conversation_id: str) -> list[int]:
    """Run the turn the webhook woke, and deliver what it wrote; the outbox ids."""
    run_turn(
        uuid.UUID(conversation_id), engine=db, agents=AgentCatalog(), settings=settings, waker=waker
    )
    with session_factory(db)() as s:
        pending = list(s.scalars(select(OutboxRow.id).where(OutboxRow.status == "pending")))
    for outbox_id in pending:
        deliver(outbox_id, engine=db, settings=settings)
    return pending


def outbox_row(db: Engine, outbox_id: int) -> OutboxRow:
    with session_factory(db)() as s:
        return s.get_one(OutboxRow, outbox_id)


def count(db: Engine, model: type) -> int:
    with session_factory(db)() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def later(seconds: float) -> Any:
    return lambda: utcnow() + timedelta(seconds=seconds)


def test_a_signed_message_runs_a_turn_and_the_reply_reaches_the_receiver_signed(
    client: TestClient,
    db: Engine,
    chat_settings: Settings,
    waker: CeleryWaker,
    receiver: ChatReceiver,
) -> None:
    sent = post(client, chat("Where is my order?", service="sales", metadata={"page": "/cart"}))
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "accepted"
    cid = sent.json()["conversation_id"]
    [oid] = answer(db, chat_settings, waker, cid)

    [got] = receiver.delivered()  # verified with the standardwebhooks package, or refused
    assert receiver.refused == []
    conversation = client.get(f"/v1/conversations/{cid}", headers=AUTH).json()
    inbound, reply = conversation["messages"]
    assert (conversation["channel"], conversation["address"]) == ("chat", "U024BE7LH")
    assert conversation["service"] == "sales"
    assert inbound["meta"] == {"metadata": {"page": "/cart"}}
    assert got.body == {
        "type": "message",
        "id": got.webhook_id,
        "conversation_id": cid,
        "service": "sales",
        "user_id": "U024BE7LH",
        "text": reply["body"],
    }
    assert got.webhook_id.startswith("msg_")
    row = outbox_row(db, oid)
    assert (row.status, row.provider_id, row.via_sink) == ("sent", got.webhook_id, False)


def test_a_retried_webhook_is_a_duplicate_and_stores_one_message(
    client: TestClient, db: Engine
) -> None:
    message = chat("only once")
    first = post(client, message)
    again = post(client, message)  # the platform's retry: a new delivery of the same message
    assert first.json()["status"] == "accepted" and again.status_code == 200
    assert again.json() == {
        "status": "duplicate",
        "conversation_id": first.json()["conversation_id"],
    }
    assert count(db, Message) == 1


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("unsigned", "missing Standard Webhooks header(s): webhook-id, webhook-timestamp"),
        ("wrong secret", "webhook-signature does not match this body with CHAT_WEBHOOK_SECRET"),
        ("tampered body", "webhook-signature does not match"),
        ("stale", "s old, outside the 5-minute tolerance"),
        ("future", "s in the future, outside the 5-minute tolerance"),
        ("malformed signature", "webhook-signature is malformed"),
    ],
)
def test_a_post_not_signed_with_the_secret_now_is_refused_403(
    client: TestClient, db: Engine, how: str, said: str
) -> None:
    body = json.dumps(chat())
    headers = sign(SECRET, "wh_1", body)
    if how == "unsigned":
        headers = {}
    elif how == "wrong secret":
        headers = sign(OTHER_SECRET, "wh_1", body)
    elif how == "tampered body":
        body = body.replace("hello", "HELLO")
    elif how == "stale":
        headers = sign(SECRET, "wh_1", body, now=time.time() - 600)
    elif how == "future":
        headers = sign(SECRET, "wh_1", body, now=time.time() + 600)
    elif how == "malformed signature":
        headers["webhook-signature"] = "v1-not-a-signature"
    refused = client.post(
        "/webhooks/chat", content=body, headers={**headers, "content-type": "application/json"}
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert said in refused.json()["detail"]
    assert count(db, Message) == 0


def test_a_signed_post_that_is_not_json_is_400(client: TestClient, db: Engine) -> None:
    refused = post(client, raw='{"id": "x", "user_id": ')
    assert refused.status_code == 400 and "malformed JSON" in refused.json()["detail"]
    assert post(client, raw='["a list"]').status_code == 400
    assert count(db, Message) == 0


def test_a_signed_post_nested_too_deep_for_the_decoder_is_400(
    client: TestClient, db: Engine
) -> None:
    refused = post(client, raw="[" * 30_000)
    assert refused.status_code == 400 and "nested too deeply" in refused.json()["detail"]
    assert count(db, Message) == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"id": "m1", "text": "no user"}, "user_id"),
        ({"id": "m1", "user_id": "   ", "text": "blank user"}, "user_id"),
        ({"id": "m1", "user_id": "U1\x07", "text": "a bell in the id"}, "user_id"),
        ({"id": "m1", "user_id": "U1", "text": "  \n "}, "text"),
        ({"user_id": "U1", "text": "no id"}, "id"),
        ({"id": 7, "user_id": "U1", "text": "a number for an id"}, "id"),
        ({"id": "m1", "user_id": "U1", "text": "hi", "metadata": {"x": "y" * 5000}}, "metadata"),
    ],
)
def test_a_missing_or_invalid_field_is_422_naming_it(
    client: TestClient, db: Engine, payload: dict[str, Any], field: str
) -> None:
    refused = post(client, payload)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["detail"].startswith(f"{field}: ")
    assert [e["loc"] for e in problem["errors"]] == [["body", field]]
    assert count(db, Message) == 0


def test_an_oversize_post_is_413_before_it_is_read(client: TestClient) -> None:
    body = json.dumps(chat("x" * 70_000))
    refused = client.post(
        "/webhooks/chat",
        content=body,
        headers={**sign(SECRET, "wh_big", body), "content-type": "application/json"},
    )
    assert refused.status_code == 413 and "65536" in refused.json()["detail"]


def test_a_chat_user_id_keeps_its_case_and_is_one_customer_per_spelling(
    client: TestClient, db: Engine
) -> None:
    upper = post(client, chat(user_id="  U024BE7LH "))
    lower = post(client, chat(user_id="u024be7lh"))
    assert upper.json()["conversation_id"] != lower.json()["conversation_id"]
    with session_factory(db)() as s:
        addresses = set(s.scalars(select(Conversation.address)))
    assert addresses == {"U024BE7LH", "u024be7lh"}


def test_a_5xx_is_retried_with_the_same_webhook_id_and_delivered_once_more(
    client: TestClient,
    db: Engine,
    chat_settings: Settings,
    waker: CeleryWaker,
    receiver: ChatReceiver,
) -> None:
    receiver.answer_next("500")
    cid = post(client, chat()).json()["conversation_id"]
    [oid] = answer(db, chat_settings, waker, cid)
    assert outbox_row(db, oid).status == "sending"  # a 500 may have been handled: ambiguous
    # Nothing to ask a receiver: reconcile finds nothing and schedules the same post again.
    assert reconcile(oid, engine=db, settings=chat_settings, clock=later(60)) == "pending"
    assert deliver(oid, engine=db, settings=chat_settings, clock=later(120)) == "sent"

    first, second = receiver.received
    assert (first.answered, second.answered) == (500, 200)
    assert first.webhook_id == second.webhook_id == second.body["id"]
    assert first.body == second.body
    assert outbox_row(db, oid).provider_id == first.webhook_id


def test_a_timeout_is_ambiguous_and_resent_with_the_same_webhook_id(
    client: TestClient,
    db: Engine,
    chat_settings: Settings,
    waker: CeleryWaker,
    receiver: ChatReceiver,
) -> None:
    receiver.answer_next("timeout")
    cid = post(client, chat()).json()["conversation_id"]
    [oid] = answer(db, chat_settings, waker, cid)
    assert outbox_row(db, oid).status == "sending"
    assert reconcile(oid, engine=db, settings=chat_settings, clock=later(60)) == "pending"
    assert deliver(oid, engine=db, settings=chat_settings, clock=later(120)) == "sent"
    ids = {r.webhook_id for r in receiver.wait_for(2)}
    assert len(ids) == 1


def test_429_and_a_refused_connection_are_retried_as_certainly_not_sent(
    client: TestClient,
    db: Engine,
    chat_settings: Settings,
    waker: CeleryWaker,
    receiver: ChatReceiver,
) -> None:
    receiver.answer_next("429")
    cid = post(client, chat()).json()["conversation_id"]
    [oid] = answer(db, chat_settings, waker, cid)
    assert outbox_row(db, oid).status == "pending"  # straight to a retry, no reconcile
    nowhere = chat_settings.model_copy(update={"chat_callback_url": "http://127.0.0.1:9/x"})
    assert deliver(oid, engine=db, settings=nowhere, clock=later(30)) == "pending"
    assert "no connection" in (outbox_row(db, oid).last_error or "")
    assert deliver(oid, engine=db, settings=chat_settings, clock=later(90)) == "sent"
    assert [r.answered for r in receiver.received] == [429, 200]


@pytest.mark.parametrize("status", ["400", "410"])
def test_a_4xx_fails_the_reply_permanently(
    client: TestClient,
    db: Engine,
    chat_settings: Settings,
    waker: CeleryWaker,
    receiver: ChatReceiver,
    status: str,
) -> None:
    receiver.answer_next(status)
    cid = post(client, chat()).json()["conversation_id"]
    [oid] = answer(db, chat_settings, waker, cid)
    row = outbox_row(db, oid)
    assert row.status == "failed" and f"answered {status}" in (row.last_error or "")
    assert len(receiver.received) == 1


def test_without_a_callback_url_replies_are_sent_through_the_api_only(
    db: Engine, chat_settings: Settings, waker: CeleryWaker, receiver: ChatReceiver
) -> None:
    api_only = chat_settings.model_copy(update={"chat_callback_url": ""})
    with TestClient(create_app(api_only, db, waker), raise_server_exceptions=False) as c:
        cid = post(c, chat()).json()["conversation_id"]
        [oid] = answer(db, api_only, waker, cid)
        row = outbox_row(db, oid)
        assert (row.status, row.via_sink) == ("sent", False)  # delivered, not the dev sink
        [_, reply] = c.get(f"/v1/conversations/{cid}", headers=AUTH).json()["messages"]
    assert reply["direction"] == "outbound" and reply["body"]
    assert receiver.received == []


def test_a_chat_user_linked_to_a_customer_brings_their_sms_memory(
    client: TestClient, db: Engine, chat_settings: Settings, waker: CeleryWaker
) -> None:
    sms_cid = ingest_sms(db, "hello, my name is Ada", sender="+14155550177").conversation_id
    run_turn(sms_cid, engine=db, agents=AgentCatalog(), settings=chat_settings, waker=waker)
    with transaction(db) as s:
        s.execute(update(Conversation).values(status="finished", finish_reason="agent"))
        customer_id = s.get_one(Conversation, sms_cid).customer_id

    linked = client.post(
        f"/v1/customers/{customer_id}/identities",
        json={"kind": "chat", "address": " ada-on-chat "},
        headers=AUTH,
    )
    assert linked.status_code == 201, linked.text
    assert {"kind": "chat", "address": "ada-on-chat", "opted_out_at": None} in linked.json()[
        "customer"
    ]["identities"]

    cid = post(client, chat("it's me again", user_id="ada-on-chat")).json()["conversation_id"]
    answer(db, chat_settings, waker, cid)
    with session_factory(db)() as s:
        conversation = s.get_one(Conversation, uuid.UUID(cid))
        reply = s.scalars(
            select(Message.body).where(
                Message.conversation_id == conversation.id, Message.direction == "outbound"
            )
        ).one()
    assert conversation.customer_id == customer_id
    assert reply.startswith("Hi Ada!")


def test_customers_take_chat_ids_and_operators_start_chat_conversations(
    client: TestClient, db: Engine, chat_settings: Settings, receiver: ChatReceiver
) -> None:
    created = client.post(
        "/v1/customers", json={"name": "Sam", "chat_ids": ["sam#42"]}, headers=AUTH
    )
    assert created.status_code == 201, created.text
    assert created.json()["identities"][0] == {
        "kind": "chat",
        "address": "sam#42",
        "opted_out_at": None,
    }
    bad = client.post("/v1/customers", json={"chat_ids": ["\x00"]}, headers=AUTH)
    assert bad.status_code == 422 and "chat_ids[0]" in bad.text

    started = client.post(
        "/v1/conversations",
        json={"service": "billing", "channel": "chat", "to": "sam#42", "message": "Invoice ready"},
        headers=AUTH,
    )
    assert started.status_code == 201, started.text
    assert started.json()["customer_id"] == created.json()["id"]
    assert deliver(started.json()["outbox_id"], engine=db, settings=chat_settings) == "sent"
    [got] = receiver.delivered()
    assert (got.body["user_id"], got.body["text"], got.body["service"]) == (
        "sam#42",
        "Invoice ready",
        "billing",
    )
    too_long = client.post(
        "/v1/conversations",
        json={"service": "b", "channel": "chat", "to": "sam#42", "message": "x" * 10_001},
        headers=AUTH,
    )
    assert too_long.status_code == 422 and "10,000" in too_long.text


def test_the_receiver_refuses_what_is_not_signed_with_the_shared_secret(
    receiver: ChatReceiver,
) -> None:
    # The fake is itself a check: a post signed with another secret is refused there.
    body = json.dumps({"type": "message"})
    answer = httpx.post(receiver.url, content=body, headers=sign(OTHER_SECRET, "msg_x", body))
    assert answer.status_code == 401 and receiver.refused and receiver.received == []
