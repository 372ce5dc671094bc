"""Customers, memory, opt-out and outbound conversations over HTTP on the real services."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update

from agent.catalog import AgentCatalog
from api.app import create_app
from conversations.db import session_factory, transaction
from conversations.models import Conversation, Customer, MemoryEntry, Message, OutboxRow
from conversations.settings import Settings
from conversations.types import utcnow
from conversations.wakeup import TURN_QUEUE, TURN_TASK, CeleryWaker
from memory.store import purge_expired, recall
from tests.conftest import API_KEY, queued
from tests.factories import ingest_sms, sms
from tests.fakes.twilio_api import FakeTwilio
from tests.test_twilio_webhooks import signed, twilio_form
from workers.deliver import deliver
from workers.turn import run_turn

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db, waker), raise_server_exceptions=False) as c:
        yield c


def count(engine: Engine, model: type) -> int:
    with session_factory(engine)() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_create_and_read_a_customer_with_normalized_addresses(client: TestClient) -> None:
    created = client.post(
        "/v1/customers",
        json={
            "external_id": "crm-1",
            "name": "Ada",
            "phones": ["(415) 555-0100"],
            "emails": ["Ada@Example.COM"],
            "attributes": {"tier": "gold"},
        },
        headers=AUTH,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert [(i["kind"], i["address"]) for i in body["identities"]] == [
        ("phone", "+14155550100"),
        ("email", "ada@example.com"),
    ]
    assert client.get(f"/v1/customers/{body['id']}", headers=AUTH).json() == body

    again = client.post("/v1/customers", json={"phones": ["+14155550100"]}, headers=AUTH)
    assert again.status_code == 409 and body["id"] in again.text
    bad = client.post("/v1/customers", json={"phones": ["nope"]}, headers=AUTH)
    assert bad.status_code == 422 and "phones[0]" in bad.text
    # Possible (seven digits) but not valid: no area code. The answer shows the form expected.
    short = client.post("/v1/customers", json={"phones": ["555-0100"]}, headers=AUTH)
    assert short.status_code == 422, short.text
    assert "phones[0]" in short.text and "not a valid phone number" in short.text
    assert "E.164" in short.text and "+14155550100" in short.text
    assert (
        client.post("/v1/customers", json={"external_id": "crm-1"}, headers=AUTH).status_code == 409
    )


def test_linking_an_address_of_another_customer_needs_an_explicit_merge(
    client: TestClient, db: Engine
) -> None:
    first = ingest_sms(db, "hi from my phone", sender="+14155550111")
    with session_factory(db)() as s:
        phone_owner = s.get_one(Conversation, first.conversation_id).customer_id
    other = client.post("/v1/customers", json={"emails": ["sam@example.com"]}, headers=AUTH).json()
    url = f"/v1/customers/{other['id']}/identities"

    refused = client.post(url, json={"kind": "phone", "address": "+14155550111"}, headers=AUTH)
    assert refused.status_code == 409 and str(phone_owner) in refused.text
    merged = client.post(
        url, json={"kind": "phone", "address": "+14155550111", "merge": True}, headers=AUTH
    )
    assert merged.status_code == 201 and merged.json()["merged"] == str(phone_owner)
    assert client.get(f"/v1/customers/{phone_owner}", headers=AUTH).status_code == 404
    # The phone's conversation now belongs to the surviving customer: continuity.
    again = ingest_sms(db, "still me", sender="+14155550111")
    assert again.conversation_id == first.conversation_id
    with session_factory(db)() as s:
        assert s.get_one(Conversation, again.conversation_id).customer_id == uuid.UUID(other["id"])


def test_concurrent_first_messages_converge_over_http(client: TestClient, db: Engine) -> None:
    forms = [twilio_form(f"m{i}", sid=f"SM{i:032d}", From="+14155550122") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda f: (
                    client.post("/webhooks/twilio/sms", data=f, headers=signed(f)).status_code
                ),
                forms,
            )
        )
    assert codes == [200] * 8
    assert (count(db, Customer), count(db, Conversation), count(db, Message)) == (1, 1, 8)


def test_memory_carries_a_name_into_the_next_conversation(
    db: Engine, settings: Settings, waker: CeleryWaker, client: TestClient
) -> None:
    cid = ingest_sms(db, "hello, my name is Ada").conversation_id
    run_turn(cid, engine=db, agents=AgentCatalog(), settings=settings, waker=waker)
    with transaction(db) as s:
        s.execute(update(Conversation).values(status="finished", finish_reason="agent"))
    nxt = ingest_sms(db, "it's me again").conversation_id
    assert nxt != cid
    run_turn(nxt, engine=db, agents=AgentCatalog(), settings=settings, waker=waker)
    with session_factory(db)() as s:
        reply = s.scalars(
            select(Message.body).where(
                Message.conversation_id == nxt, Message.direction == "outbound"
            )
        ).one()
        customer_id = s.get_one(Conversation, nxt).customer_id
    assert reply.startswith("Hi Ada!")
    memory = client.get(f"/v1/customers/{customer_id}/memory", headers=AUTH).json()
    assert [(e["kind"], e["text"]) for e in memory["entries"]] == [("fact", "name: Ada")]


def test_memory_reads_ignore_expired_entries_and_the_purge_deletes_them(db: Engine) -> None:
    cid = ingest_sms(db, "hi").conversation_id
    now = utcnow()
    with transaction(db) as s:
        customer_id = s.get_one(Conversation, cid).customer_id
        for age_days, text in ((20, "old fact"), (1, "new fact")):
            s.add(
                MemoryEntry(
                    customer_id=customer_id,
                    kind="fact",
                    text=text,
                    created_at=now - timedelta(days=age_days),
                )
            )
        s.execute(
            update(Conversation).values(status="finished", finished_at=now - timedelta(days=20))
        )
    with session_factory(db)() as s:
        assert [m.text for m in recall(s, customer_id, now=now, retention=timedelta(days=14))] == [
            "new fact"
        ]
    with transaction(db) as s:
        purged = purge_expired(s, now=now, retention=timedelta(days=14), batch=100)
    assert (purged.memory_entries, purged.conversations) == (1, 1)
    assert count(db, Message) == 0  # the finished conversation's messages went with it


def test_erasure_removes_everything_and_the_api_answers_404(client: TestClient, db: Engine) -> None:
    cid = ingest_sms(db, "erase me").conversation_id
    with session_factory(db)() as s:
        customer_id = s.get_one(Conversation, cid).customer_id
    started = client.post(
        "/v1/conversations",
        json={"service": "other", "channel": "sms", "to": "+14155550100", "message": "pending out"},
        headers=AUTH,
    )
    assert started.status_code == 201
    assert client.delete(f"/v1/customers/{customer_id}", headers=AUTH).status_code == 204
    for path in (
        f"/v1/customers/{customer_id}",
        f"/v1/conversations/{cid}",
        f"/v1/customers/{customer_id}/memory",
    ):
        assert client.get(path, headers=AUTH).status_code == 404
    assert all(count(db, m) == 0 for m in (Customer, Conversation, Message, OutboxRow))
    assert client.delete(f"/v1/customers/{customer_id}", headers=AUTH).status_code == 404


def test_outbound_with_a_message_is_sent_as_written(
    client: TestClient, db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    response = client.post(
        "/v1/conversations",
        json={
            "service": "billing",
            "channel": "sms",
            "to": "(415) 555-0133",
            "message": "Your invoice is ready.",
        },
        headers=AUTH,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["status"], body["service"], body["address"]) == (
        "suspended",
        "billing",
        "+14155550133",
    )
    assert deliver(body["outbox_id"], engine=db, settings=settings) == "sent"
    assert [m.body for m in fake_twilio.sent_to("+14155550133")] == ["Your invoice is ready."]

    again = client.post(
        "/v1/conversations",
        json={"service": "billing", "channel": "sms", "to": "+14155550133"},
        headers=AUTH,
    )
    assert again.status_code == 409
    assert again.json()["conversation_id"] == body["id"]


def test_outbound_without_a_message_lets_the_agent_open(
    client: TestClient, db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    body = client.post(
        "/v1/conversations",
        json={
            "service": "delivery",
            "channel": "sms",
            "to": "+14155550144",
            "context": {"reason": "your parcel"},
        },
        headers=AUTH,
    ).json()
    assert queued(settings.effective_broker_url, TURN_QUEUE) == [(TURN_TASK, [body["id"]])]
    assert (
        run_turn(
            uuid.UUID(body["id"]), engine=db, agents=AgentCatalog(), settings=settings, waker=waker
        )
        == 1
    )
    with session_factory(db)() as s:
        [opening] = s.scalars(select(Message.body).where(Message.direction == "outbound")).all()
    assert opening == "Hi! You're talking to the delivery assistant. I'm writing about your parcel."


def test_idempotency_key_returns_the_first_result(client: TestClient, db: Engine) -> None:
    payload = {"service": "s", "channel": "sms", "to": "+14155550155", "message": "hello"}
    headers = {**AUTH, "Idempotency-Key": "order-42"}
    first = client.post("/v1/conversations", json=payload, headers=headers)
    second = client.post("/v1/conversations", json=payload, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert count(db, Conversation) == 1 and count(db, OutboxRow) == 1
    changed = client.post(
        "/v1/conversations", json={**payload, "message": "other"}, headers=headers
    )
    assert changed.status_code == 422


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"service": "s", "channel": "sms", "to": "not a number"}, 422, "to"),
        ({"service": "s", "channel": "sms", "to": "555-0100"}, 422, "E.164"),
        ({"service": "s", "channel": "fax", "to": "+14155550100"}, 422, "channel"),
        ({"service": "s", "channel": "sms"}, 422, "exactly one of to and customer_id"),
        ({"service": "s", "channel": "sms", "customer_id": str(uuid.uuid4())}, 404, "no customer"),
        ({"service": "", "channel": "sms", "to": "+14155550100"}, 422, "service"),
    ],
)
def test_bad_outbound_requests_are_refused_naming_the_problem(
    client: TestClient, db: Engine, payload: dict[str, object], status: int, fragment: str
) -> None:
    response = client.post("/v1/conversations", json=payload, headers=AUTH)
    assert response.status_code == status and fragment in response.text
    assert count(db, Conversation) == 0


@pytest.mark.parametrize("word", ["STOP", "stop", "Unsubscribe", "QUIT.", "optout"])
def test_stop_opts_out_finishes_and_nothing_is_sent_after(
    client: TestClient, db: Engine, settings: Settings, fake_twilio: FakeTwilio, word: str
) -> None:
    hello = twilio_form("hello", sid="SM" + "1" * 32)
    answered = client.post("/webhooks/twilio/sms", data=hello, headers=signed(hello))
    stop = twilio_form(word, sid="SM" + "2" * 32)
    stopped = client.post("/webhooks/twilio/sms", data=stop, headers=signed(stop))
    assert stopped.status_code == 200
    with session_factory(db)() as s:
        conv = s.scalars(select(Conversation)).one()
    assert (conv.status, conv.finish_reason) == ("finished", "opt_out")
    # What `dormouse simulate` reads to say so instead of waiting for a reply.
    assert answered.headers["X-Dormouse-Reply"] == "coming"
    assert answered.headers["X-Dormouse-Conversation"] == str(conv.id)
    assert stopped.headers["X-Dormouse-Reply"] == "none"

    refused = client.post(
        "/v1/conversations",
        json={"service": "x", "channel": "sms", "to": "+14155550100", "message": "promo"},
        headers=AUTH,
    )
    assert refused.status_code == 409 and "opted out" in refused.text
    with transaction(db) as s:  # even a row that slipped in before the STOP is never sent
        from conversations.outbox import enqueue_reply
        from conversations.states import Role

        oid = enqueue_reply(
            s,
            conversation_id=conv.id,
            channel="sms",
            to="+14155550100",
            text="late",
            role=Role.AGENT,
            turn=None,
            now=utcnow(),
        )
    assert deliver(oid, engine=db, settings=settings) == "failed"
    assert fake_twilio.create_attempts == 0

    start = twilio_form("START", sid="SM" + "3" * 32)
    started = client.post("/webhooks/twilio/sms", data=start, headers=signed(start))
    assert started.headers["X-Dormouse-Reply"] == "none"
    again = client.post(
        "/v1/conversations",
        json={"service": "x", "channel": "sms", "to": "+14155550100", "message": "welcome back"},
        headers=AUTH,
    )
    assert again.status_code == 201


def test_an_opted_out_number_that_writes_again_is_kept_but_runs_no_turn(
    client: TestClient, db: Engine, settings: Settings
) -> None:
    for sid, body in (("1", "hello"), ("2", "STOP"), ("3", "wait, one question")):
        form = twilio_form(body, sid="SM" + sid * 32)
        assert (
            client.post("/webhooks/twilio/sms", data=form, headers=signed(form)).status_code == 200
        )
    with session_factory(db)() as s:
        last = s.scalars(select(Message).order_by(Message.id.desc())).first()
        assert last is not None and (last.body, last.inbound_state) == (
            "wait, one question",
            "done",
        )
        pending_turns = [
            args
            for task, args in queued(settings.effective_broker_url, TURN_QUEUE)
            if args == [str(last.conversation_id)]
        ]
    assert pending_turns == []  # no agent answers someone who asked for no messages

    start = twilio_form("START", sid="SM" + "4" * 32)
    client.post("/webhooks/twilio/sms", data=start, headers=signed(start))
    after = twilio_form("back again", sid="SM" + "5" * 32)
    client.post("/webhooks/twilio/sms", data=after, headers=signed(after))
    with session_factory(db)() as s:
        back = s.scalars(select(Message).where(Message.body == "back again")).one()
    assert back.inbound_state == "pending"


def test_help_gets_the_help_text_and_no_turn(
    client: TestClient, db: Engine, settings: Settings
) -> None:
    form = twilio_form("help")
    client.post("/webhooks/twilio/sms", data=form, headers=signed(form))
    with session_factory(db)() as s:
        assert s.scalars(select(OutboxRow.body)).all() == [settings.help_text]
        assert s.scalars(
            select(Message.inbound_state).where(Message.direction == "inbound")
        ).all() == ["done"]
    assert queued(settings.effective_broker_url, TURN_QUEUE) == []


def test_twilio_21610_on_send_opts_the_number_out(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    from conversations.customers import send_refusal
    from conversations.outbox import enqueue_reply
    from conversations.states import Role

    cid = ingest_sms(db, "hi").conversation_id
    fake_twilio.script = [21610]
    with transaction(db) as s:
        oid = enqueue_reply(
            s,
            conversation_id=cid,
            channel="sms",
            to="+14155550100",
            text="x",
            role=Role.AGENT,
            turn=None,
            now=utcnow(),
        )
    assert deliver(oid, engine=db, settings=settings) == "failed"
    with session_factory(db)() as s:
        assert "opted out" in (send_refusal(s, "phone", "+14155550100") or "")


def test_a_message_from_any_linked_address_continues_and_replies_on_the_last_channel(
    db: Engine,
) -> None:
    first = ingest_sms(db, "from phone one", sender="+14155550166").conversation_id
    with transaction(db) as s:
        from conversations.customers import link_address

        customer_id = s.get_one(Conversation, first).customer_id
        link_address(
            s,
            customer_id,
            kind="phone",
            address="+14155550177",
            merge=False,
            actor="tests",
            now=utcnow(),
        )
    with transaction(db) as s:
        from conversations.ingest import ingest
        from tests.factories import DEFAULTS, HELP

        second = ingest(
            s,
            sms("from phone two", sender="+14155550177"),
            service="default",
            now=utcnow(),
            defaults=DEFAULTS,
            help_text=HELP,
        ).conversation_id
    assert second == first
    with session_factory(db)() as s:
        assert s.get_one(Conversation, first).address == "+14155550177"
