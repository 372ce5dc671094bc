"""Event webhooks in one process: endpoints through the API, events written with the changes
they report, posted to a real local receiver that verifies every signature with the
standardwebhooks package. Real database and broker; time moves through the senders' clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from agent.catalog import AgentCatalog
from api.app import create_app
from conversations import lifecycle
from conversations.db import session_factory, transaction
from conversations.erasure import erase
from conversations.models import Conversation, OutboxRow, WebhookDelivery, WebhookEndpoint
from conversations.outbox import record_delivery_status
from conversations.settings import Settings
from conversations.states import FinishReason
from conversations.types import utcnow
from conversations.wakeup import CeleryWaker
from scheduler.sweeps import Window, redrive_once
from tests.conftest import API_KEY
from tests.factories import DEFAULTS, ingest_sms
from tests.fakes.event_receiver import EventReceiver
from workers import webhooks as sender
from workers.deliver import deliver
from workers.turn import run_turn
from workers.wrapup import wrap_up

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def receiver() -> Iterator[EventReceiver]:
    server = EventReceiver(hang_seconds=1.0).start()
    yield server
    server.stop()


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_timeout": 0.5})


@pytest.fixture
def client(db: Engine, hook_settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(hook_settings, db, waker), raise_server_exceptions=False) as c:
        yield c


def add_endpoint(client: TestClient, receiver: EventReceiver, **fields: Any) -> dict[str, Any]:
    answer = client.post("/v1/webhooks", json={"url": receiver.url, **fields}, headers=AUTH)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    receiver.secrets = [body["secret"]]
    return body


def pump(db: Engine, settings: Settings, at: datetime | None = None) -> sender.Outcome:
    clock: Callable[[], datetime] = (lambda: at) if at is not None else utcnow
    return sender.send_due(None, engine=db, settings=settings, clock=clock)


def types(posts: list[Any]) -> list[str]:
    return [p.body["type"] for p in posts]


# --- managing endpoints ------------------------------------------------------------------


def test_endpoints_are_created_listed_changed_and_deleted(
    client: TestClient, receiver: EventReceiver
) -> None:
    created = add_endpoint(client, receiver, event_types=["message.received"], service="support")
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["message.received"] and created["service"] == "support"
    listed = client.get("/v1/webhooks", headers=AUTH).json()
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0]  # shown once

    path = f"/v1/webhooks/{created['id']}"
    changed = client.patch(path, json={"event_types": [], "service": ""}, headers=AUTH).json()
    assert changed["event_types"] == [] and changed["service"] is None
    off = client.patch(path, json={"enabled": False}, headers=AUTH).json()
    assert off["enabled"] is False and off["disabled_reason"]
    on = client.patch(path, json={"enabled": True}, headers=AUTH).json()
    assert on["enabled"] is True and on["disabled_reason"] is None

    assert client.delete(path, headers=AUTH).status_code == 204
    gone = client.get(path, headers=AUTH)
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/hook", "not an http(s) URL"),
        ("example.com/hook", "not an http(s) URL"),
        ("http://dormouse.test/v1/webhooks", "this API itself"),  # PUBLIC_URL
        ("http://127.0.0.1:8000/hook", "this API itself"),  # PORT on loopback
    ],
)
def test_urls_that_are_not_http_or_point_at_this_api_are_refused(
    client: TestClient, url: str, says: str
) -> None:
    answer = client.post("/v1/webhooks", json={"url": url}, headers=AUTH)
    assert answer.status_code == 422 and says in answer.json()["detail"]


def test_unknown_event_types_are_refused(client: TestClient, receiver: EventReceiver) -> None:
    answer = client.post(
        "/v1/webhooks", json={"url": receiver.url, "event_types": ["message.created"]}, headers=AUTH
    )
    assert answer.status_code == 422


def test_private_addresses_are_allowed_unless_the_setting_refuses_them(
    db: Engine, hook_settings: Settings, waker: CeleryWaker, receiver: EventReceiver
) -> None:
    strict = hook_settings.model_copy(update={"webhook_allow_private": False})
    with TestClient(create_app(strict, db, waker), raise_server_exceptions=False) as c:
        for url in (receiver.url, "http://10.1.2.3/hook", "http://localhost:9/hook"):
            answer = c.post("/v1/webhooks", json={"url": url}, headers=AUTH)
            assert answer.status_code == 422, url
            assert "WEBHOOK_ALLOW_PRIVATE" in answer.json()["detail"]
    with TestClient(create_app(hook_settings, db, waker), raise_server_exceptions=False) as c:
        assert c.post("/v1/webhooks", json={"url": receiver.url}, headers=AUTH).status_code == 201


# --- every event, signed, once ----------------------------------------------------------


def test_every_event_type_arrives_signed_once_in_order(
    db: Engine,
    client: TestClient,
    hook_settings: Settings,
    waker: CeleryWaker,
    receiver: EventReceiver,
) -> None:
    add_endpoint(client, receiver)
    cid = ingest_sms(db, "hello").conversation_id
    assert cid is not None
    run_turn(cid, engine=db, agents=AgentCatalog(), settings=hook_settings, waker=waker)
    with session_factory(db)() as s:
        [outbox_id] = s.scalars(select(OutboxRow.id)).all()
    assert deliver(outbox_id, engine=db, settings=hook_settings) == "sent"
    with session_factory(db)() as s:
        provider_id = s.scalar(select(OutboxRow.provider_id))
    assert provider_id is not None
    with transaction(db) as s:
        record_delivery_status(
            s, channel="sms", provider_id=provider_id, status="delivered", error_code=None,
            now=utcnow(),
        )  # fmt: skip
    with transaction(db) as s:
        lifecycle.handoff(s, cid, reason="wants a person", now=utcnow())
    with transaction(db) as s:
        lifecycle.handback(s, cid, now=utcnow(), defaults=DEFAULTS)
    with transaction(db) as s:
        lifecycle.finish(s, cid, reason=FinishReason.OPERATOR, now=utcnow())
    pump(db, hook_settings)
    # Finished, but not wrapped up: its event waits for the summary.
    assert "conversation.finished" not in types(receiver.taken())
    assert wrap_up(cid, engine=db, agents=AgentCatalog())
    with session_factory(db)() as s:
        customer_id = s.scalar(select(Conversation.customer_id))
    assert customer_id is not None
    pump(db, hook_settings)
    erase(db, customer_id)
    pump(db, hook_settings)

    posts = receiver.taken()
    assert types(posts) == [
        "conversation.started",
        "message.received",
        "message.sent",
        "message.delivery_updated",
        "conversation.handoff",
        "conversation.handback",
        "conversation.finished",
        "customer.erased",
    ]
    assert len(receiver.posts) == len(posts) and receiver.refused == []  # once each, all signed
    for post in posts:
        assert set(post.body) == {"type", "id", "timestamp", "data"}
        assert post.body["id"] == post.webhook_id
    by_type = {p.body["type"]: p.body["data"] for p in posts}
    assert by_type["message.received"]["message"]["text"] == "hello"
    assert by_type["message.sent"]["message"]["direction"] == "outbound"
    assert by_type["message.delivery_updated"]["status"] == "delivered"
    assert by_type["conversation.handoff"]["reason"] == "wants a person"
    finished = by_type["conversation.finished"]
    assert finished["finish_reason"] == "operator" and finished["summary"]
    assert finished["messages"] == {"inbound": 1, "outbound": 1}
    assert finished["usage"]["turns"] == 1 and finished["duration_seconds"] >= 0
    assert by_type["customer.erased"] == {"customer_id": str(customer_id)}


def test_an_event_whose_change_rolled_back_is_owed_to_no_one(
    db: Engine, client: TestClient, hook_settings: Settings, receiver: EventReceiver
) -> None:
    add_endpoint(client, receiver)
    with pytest.raises(RuntimeError), transaction(db) as s:
        from conversations.ingest import ingest
        from tests.factories import HELP, sms

        ingest(s, sms("rolled back"), service="default", now=utcnow(), defaults=DEFAULTS,
               help_text=HELP)  # fmt: skip
        raise RuntimeError("the change fails after its events were written")
    with session_factory(db)() as s:
        assert s.scalars(select(WebhookDelivery)).all() == []
    assert pump(db, hook_settings).delivered == 0 and receiver.posts == []


def test_filters_choose_types_and_service(
    db: Engine, client: TestClient, hook_settings: Settings, receiver: EventReceiver
) -> None:
    add_endpoint(client, receiver, event_types=["message.received"], service="sales")
    ingest_sms(db, "to support", service="support")
    ingest_sms(db, "to sales", sender="+14155550111", service="sales")
    pump(db, hook_settings)
    posts = receiver.taken()
    assert types(posts) == ["message.received"]
    assert posts[0].body["data"]["message"]["text"] == "to sales"


# --- retries, order, disabling -----------------------------------------------------------


def test_a_receiver_failing_three_times_gets_the_event_once_on_schedule(
    db: Engine, client: TestClient, hook_settings: Settings, receiver: EventReceiver
) -> None:
    endpoint = add_endpoint(client, receiver, event_types=["message.received"])
    receiver.answer_next("500", "timeout", "503")
    t0 = utcnow()
    ingest_sms(db, "hello", now=t0)

    def due() -> datetime:
        with session_factory(db)() as s:
            when = s.scalar(select(WebhookDelivery.next_attempt_at))
        assert when is not None
        return when

    pump(db, hook_settings, t0)  # immediately: 500
    first = due()
    assert 4.5 <= (first - t0).total_seconds() <= 5.5  # 5 s, jittered
    assert pump(db, hook_settings, first - timedelta(seconds=1)).delivered == 0  # not yet
    pump(db, hook_settings, first)  # times out
    second = due()
    assert 270 <= (second - first).total_seconds() <= 330  # 5 min
    pump(db, hook_settings, second)  # 503
    third = due()
    assert 1620 <= (third - second).total_seconds() <= 1980  # 30 min
    assert pump(db, hook_settings, third).delivered == 1

    assert len(receiver.posts) == 4 and len(receiver.taken()) == 1
    assert len({p.webhook_id for p in receiver.posts}) == 1  # the same id on every attempt
    [shown] = client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=AUTH).json()
    assert shown["status"] == "delivered" and shown["attempts"] == 4
    assert shown["last_status_code"] == 200 and shown["last_latency_ms"] is not None
    assert shown["next_attempt_at"] is None


def test_one_conversations_events_wait_for_the_earlier_ones(
    db: Engine, client: TestClient, hook_settings: Settings, receiver: EventReceiver
) -> None:
    add_endpoint(client, receiver, event_types=["message.received"])
    t0 = utcnow()
    receiver.answer_next("500")
    ingest_sms(db, "first", now=t0)
    ingest_sms(db, "second", now=t0)
    ingest_sms(db, "elsewhere", sender="+14155550199", now=t0)
    pump(db, hook_settings, t0)
    # The first failed: the second waits behind it; the other conversation does not.
    assert [p.body["data"]["message"]["text"] for p in receiver.taken()] == ["elsewhere"]
    pump(db, hook_settings, t0 + timedelta(seconds=6))
    texts = [p.body["data"]["message"]["text"] for p in receiver.taken()]
    assert texts == ["elsewhere", "first", "second"]


def test_410_gone_disables_the_endpoint(
    db: Engine, client: TestClient, hook_settings: Settings, receiver: EventReceiver
) -> None:
    endpoint = add_endpoint(client, receiver, event_types=["message.received"])
    receiver.answer_next("410")
    ingest_sms(db, "hello")
    pump(db, hook_settings)
    shown = client.get(f"/v1/webhooks/{endpoint['id']}", headers=AUTH).json()
    assert shown["enabled"] is False and "410" in shown["disabled_reason"]
    ingest_sms(db, "after", sender="+14155550122")
    pump(db, hook_settings)
    assert len(receiver.posts) == 1  # nothing more is sent, nothing more is owed
    with session_factory(db)() as s:
        assert len(s.scalars(select(WebhookDelivery)).all()) == 1


def test_an_endpoint_failing_for_five_days_is_disabled_with_its_reason(
    db: Engine, client: TestClient, hook_settings: Settings, receiver: EventReceiver
) -> None:
    endpoint = add_endpoint(client, receiver, event_types=["message.received"])
    t0 = utcnow()
    receiver.answer_next("500", "500")
    ingest_sms(db, "monday", now=t0)
    pump(db, hook_settings, t0)
    ingest_sms(db, "saturday", sender="+14155550133", now=t0 + timedelta(days=5))
    pump(db, hook_settings, t0 + timedelta(days=5, seconds=1))
    shown = client.get(f"/v1/webhooks/{endpoint['id']}", headers=AUTH).json()
    assert shown["enabled"] is False
    assert "failing since" in shown["disabled_reason"] and "HTTP 500" in shown["disabled_reason"]


def test_a_rotated_secret_signs_beside_the_old_one_for_24_hours(
    db: Engine, client: TestClient, hook_settings: Settings, receiver: EventReceiver
) -> None:
    endpoint = add_endpoint(client, receiver, event_types=["message.received"])
    old = endpoint["secret"]
    rotated = client.post(f"/v1/webhooks/{endpoint['id']}/rotate", headers=AUTH).json()
    new = rotated["secret"]
    assert new != old and rotated["previous_secret_expires_at"]
    receiver.secrets = [old, new]  # each must verify the post on its own
    t0 = utcnow()
    ingest_sms(db, "during the overlap", now=t0)
    pump(db, hook_settings, t0)
    assert len(receiver.taken()) == 1 and receiver.refused == []
    assert len(receiver.taken()[0].signature.split(" ")) == 2

    receiver.secrets = [old]
    later = t0 + timedelta(hours=24, seconds=1)
    ingest_sms(db, "after it", sender="+14155550144", now=later)
    pump(db, hook_settings, later)
    assert receiver.refused  # the old secret no longer signs
    receiver.secrets = [new]
    pump(db, hook_settings, later + timedelta(seconds=6))
    assert len(receiver.taken()) == 2


def test_a_delivery_is_replayed_with_its_webhook_id(
    db: Engine, client: TestClient, hook_settings: Settings, receiver: EventReceiver
) -> None:
    endpoint = add_endpoint(client, receiver, event_types=["message.received"])
    ingest_sms(db, "hello")
    pump(db, hook_settings)
    [shown] = client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=AUTH).json()
    path = f"/v1/webhooks/{endpoint['id']}/deliveries/{shown['id']}/retry"
    answer = client.post(path, headers=AUTH)
    assert answer.status_code == 202 and answer.json()["status"] == "pending"
    assert answer.json()["attempts"] == shown["attempts"] == 1  # the history stays
    pump(db, hook_settings)
    assert [p.webhook_id for p in receiver.posts] == [shown["event_id"]] * 2
    [again] = client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=AUTH).json()
    assert (again["status"], again["attempts"]) == ("delivered", 2)
    missing = f"/v1/webhooks/{endpoint['id']}/deliveries/999999/retry"
    assert client.post(missing, headers=AUTH).status_code == 404


def test_the_redrive_sends_what_no_wake_up_announced(
    db: Engine, client: TestClient, hook_settings: Settings, waker: CeleryWaker,
    receiver: EventReceiver,
) -> None:  # fmt: skip
    add_endpoint(client, receiver, event_types=["message.received"])
    t0 = utcnow()
    ingest_sms(db, "hello", now=t0)  # committed; its wake-up never published
    window = Window(now=t0 + timedelta(seconds=20), grace=timedelta(seconds=15),
                    rewake_after=timedelta(seconds=60))  # fmt: skip
    counts = redrive_once(db, waker, window, reconcile_after=timedelta(seconds=60), limit=50)
    assert counts["webhooks"] == 1
    again = redrive_once(db, waker, window, reconcile_after=timedelta(seconds=60), limit=50)
    assert again["webhooks"] == 0  # stamped: woken once


def test_a_dead_workers_claim_is_taken_again_once_stale(
    db: Engine, client: TestClient, hook_settings: Settings, receiver: EventReceiver
) -> None:
    from conversations import webhook_outbox

    add_endpoint(client, receiver, event_types=["message.received"])
    t0 = utcnow()
    ingest_sms(db, "hello", now=t0)
    with session_factory(db)() as s:
        delivery_id = s.scalars(select(WebhookDelivery.id)).one()
    with transaction(db) as s:  # a worker claims it, then is killed before posting
        assert webhook_outbox.claim(s, delivery_id, now=t0, stale_before=t0) is not None
    assert pump(db, hook_settings, t0 + timedelta(seconds=1)).delivered == 0
    late = t0 + sender.stale_after(hook_settings) + timedelta(seconds=1)
    assert pump(db, hook_settings, late).delivered == 1
    assert len(receiver.taken()) == 1


# --- reading events ----------------------------------------------------------------------


def test_events_are_read_as_receivers_get_them(db: Engine, client: TestClient) -> None:
    first = ingest_sms(db, "hello").conversation_id
    ingest_sms(db, "other", sender="+14155550155")
    everything = client.get("/v1/events", headers=AUTH).json()
    assert [e["type"] for e in everything] == ["conversation.started", "message.received"] * 2
    mine = client.get(f"/v1/events?conversation_id={first}", headers=AUTH).json()
    assert [e["data"]["conversation_id"] for e in mine] == [str(first)] * 2
    received = client.get("/v1/events?type=message.received&limit=1", headers=AUTH)
    [one] = received.json()
    assert one["data"]["message"]["text"] == "hello"
    nxt = client.get(f"/v1/events?type=message.received&after={one['cursor']}", headers=AUTH)
    assert received.headers["X-Next-Cursor"] == str(one["cursor"])
    assert [e["data"]["message"]["text"] for e in nxt.json()] == ["other"]
    assert client.get("/v1/events?type=message.created", headers=AUTH).status_code == 422


def test_no_endpoint_no_deliveries(db: Engine, hook_settings: Settings) -> None:
    ingest_sms(db, "hello")
    with session_factory(db)() as s:
        assert s.scalars(select(WebhookDelivery)).all() == []
        assert s.scalars(select(WebhookEndpoint)).all() == []


def test_stale_unknown_conversation_keys_are_harmless(db: Engine, hook_settings: Settings) -> None:
    outcome = sender.send_due([uuid.uuid4(), None], engine=db, settings=hook_settings)
    assert outcome.delivered == 0 and not outcome.more
