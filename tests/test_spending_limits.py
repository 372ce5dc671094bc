"""Spending limits (LIMIT_*): what a stranger can make Dormouse spend or send is bounded. Over
a limit the message is stored, its conversation held (no turn, nothing sent), a
``conversation.limited`` event names the limit and ``dormouse_limited_total`` counts it.
Counted in the real Redis (the broker's), shared by every process."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, select

from agent.catalog import AgentCatalog
from api.app import create_app
from conversations.db import session_factory
from conversations.models import Conversation, Event, OutboxRow
from conversations.settings import Settings
from conversations.spending import SpendingLimits
from conversations.wakeup import TURN_QUEUE, CeleryWaker
from tests.conftest import API_KEY, queued
from tests.fakes.twilio_api import FakeTwilio
from tests.test_metrics import scrape, value
from tests.test_twilio_webhooks import signed, twilio_form
from workers.deliver import deliver
from workers.turn import run_turn

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def app_with(db: Engine, settings: Settings, waker: CeleryWaker, **limits: str) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update=limits), db, waker), raise_server_exceptions=False
    )


def text(client: TestClient, body: str, sender: str = "+14155550100") -> str:
    form = twilio_form(body, sid="SM" + uuid.uuid4().hex, From=sender)
    answered = client.post("/webhooks/twilio/sms", data=form, headers=signed(form))
    assert answered.status_code == 200, answered.text
    with session_factory(client.app.state.dormouse.engine)() as s:  # type: ignore[attr-defined]
        query = select(Conversation.id).order_by(Conversation.created_at.desc()).limit(1)
        return str(s.scalars(query).one())


def limited(db: Engine, cid: str) -> list[dict[str, object]]:
    with session_factory(db)() as s:
        query = select(Event.data).where(
            Event.conversation_id == uuid.UUID(cid), Event.type == "conversation.limited"
        )
        return list(s.scalars(query))


def status(db: Engine, cid: str) -> tuple[str, str | None]:
    with session_factory(db)() as s:
        c = s.get_one(Conversation, uuid.UUID(cid))
        return c.status, c.held_reason


def turn(db: Engine, settings: Settings, waker: CeleryWaker, cid: str) -> int:
    return run_turn(
        uuid.UUID(cid), engine=db, agents=AgentCatalog(), settings=settings, waker=waker
    )


@pytest.fixture
def client(db: Engine, settings: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with app_with(db, settings, waker) as c:
        yield c


def test_new_conversations_per_address_are_limited(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    with app_with(db, settings, waker, limit_conversations_per_address="1/hour") as c:
        before = value(scrape(c), "dormouse_limited_total", limit="conversations_per_address")
        first = text(c, "hi")
        turn(db, settings, waker, first)  # answered, so finishing leaves nothing to reopen
        assert c.post(f"/v1/conversations/{first}/finish", headers=AUTH).is_success
        broker = settings.effective_broker_url
        queued_before = len(queued(broker, TURN_QUEUE))

        second = text(c, "hi again")
        assert second != first
        state, reason = status(db, second)
        assert state == "held" and "LIMIT_CONVERSATIONS_PER_ADDRESS (1/hour)" in (reason or "")
        assert len(queued(broker, TURN_QUEUE)) == queued_before  # no turn woken
        [event] = limited(db, second)
        assert event["limit"] == "conversations_per_address"
        after = value(scrape(c), "dormouse_limited_total", limit="conversations_per_address")
        assert after == before + 1
        # Someone else is not affected.
        assert status(db, text(c, "hello", sender="+14155550199"))[0] == "suspended"


def test_new_mail_conversations_per_domain_are_limited(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    from tests.test_email_channel import mail, post

    mailed = settings.model_copy(update={"email_inbound_secret": "inbound-secret-for-tests"})
    with app_with(db, mailed, waker, limit_conversations_per_domain="2/hour") as c:
        answers = [post(c, mail("hi", sender=f"p{i}@spam.test")).json() for i in range(3)]
        assert [a["status"] for a in answers] == ["accepted", "accepted", "held"]
        state, reason = status(db, answers[2]["conversation_id"])
        assert state == "held" and "LIMIT_CONVERSATIONS_PER_DOMAIN" in (reason or "")
        assert post(c, mail("hi", sender="ada@example.com")).json()["status"] == "accepted"


def test_turns_per_conversation_stop_a_loop(
    db: Engine, settings: Settings, waker: CeleryWaker, fake_twilio: FakeTwilio
) -> None:
    limits = {"limit_turns_per_conversation": "2/minute"}
    looping = settings.model_copy(update=limits)
    with app_with(db, settings, waker, **limits) as c:
        cid = text(c, "one")
        assert turn(db, looping, waker, cid) == 1
        text(c, "two")
        assert turn(db, looping, waker, cid) == 1
        text(c, "three")
        assert turn(db, looping, waker, cid) == 0  # held instead of answered
        state, reason = status(db, cid)
        assert state == "held" and "LIMIT_TURNS_PER_CONVERSATION" in (reason or "")
        assert [e["limit"] for e in limited(db, cid)] == ["turns_per_conversation"]
        with session_factory(db)() as s:
            assert len(s.scalars(select(OutboxRow)).all()) == 2

        # The operator releases it: the third message is answered (a fresh minute's count is
        # not needed: the release is the operator's decision, the limit counts turns run).
        assert c.post(f"/v1/conversations/{cid}/release", headers=AUTH).is_success
        assert status(db, cid)[0] == "suspended"


def test_all_turns_per_minute_are_limited(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    limits = {"limit_turns": "1/minute"}
    with app_with(db, settings, waker, **limits) as c:
        first = text(c, "hi", sender="+14155550101")
        second = text(c, "hi", sender="+14155550102")
        capped = settings.model_copy(update=limits)
        assert turn(db, capped, waker, first) == 1
        assert turn(db, capped, waker, second) == 0
        assert status(db, second)[0] == "held"
        assert [e["limit"] for e in limited(db, second)] == ["turns"]


def test_sms_per_number_per_day_are_limited(
    db: Engine, settings: Settings, waker: CeleryWaker, fake_twilio: FakeTwilio
) -> None:
    limits = {"limit_sms_per_number": "1/day"}
    capped = settings.model_copy(update=limits)
    with app_with(db, settings, waker, **limits) as c:
        cid = text(c, "one")
        turn(db, capped, waker, cid)
        text(c, "two")
        turn(db, capped, waker, cid)
    with session_factory(db)() as s:
        rows = [r.id for r in s.scalars(select(OutboxRow).order_by(OutboxRow.id))]
    assert [deliver(r, engine=db, settings=capped) for r in rows] == ["sent", "failed"]
    assert len(fake_twilio.sent_to("+14155550100")) == 1
    with session_factory(db)() as s:
        refused = s.get_one(OutboxRow, rows[1])
    assert "LIMIT_SMS_PER_NUMBER (1/day)" in (refused.last_error or "")
    assert [e["limit"] for e in limited(db, cid)] == ["sms_per_number"]


def test_counts_are_shared_by_every_process(settings: Settings) -> None:
    # Two processes are two SpendingLimits on one Redis: the second sees the first's count.
    capped = settings.model_copy(update={"limit_sms_per_number": "1/day"})
    assert SpendingLimits(capped).sms("+14155550111") is None
    assert SpendingLimits(capped).sms("+14155550111") is not None


def test_a_store_that_cannot_count_lets_the_message_through(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = {
        "limit_storage_url": f"redis://127.0.0.1:{port}/0",
        "limit_turns_per_conversation": "1/minute",
    }
    with app_with(db, settings, waker, **down) as c:
        cid = text(c, "hi")
        assert status(db, cid)[0] == "suspended"  # accepted, not held, not a 5xx


@pytest.mark.parametrize("value", ["5 per fortnight", "many", "-1/hour"])
def test_a_limit_that_is_not_one_is_refused_naming_it(value: str) -> None:
    with pytest.raises(ValidationError, match=r"LIMIT_TURNS: .* is not a limit"):
        Settings(limit_turns=value)


def test_off_switches_a_limit_off(settings: Settings) -> None:
    unlimited = settings.model_copy(update={"limit_sms_per_number": "off"})
    assert all(SpendingLimits(unlimited).sms("+14155550112") is None for _ in range(5))
