"""SMS_SERVICES: the Twilio number a text is sent to picks the service, and a service's
texts go out from its own number; an answer to an outbound text stays in its conversation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from agent.catalog import AgentCatalog
from api.app import create_app
from conversations.db import session_factory
from conversations.models import Conversation, OutboxRow
from conversations.settings import Settings
from conversations.wakeup import CeleryWaker
from tests.conftest import API_KEY, FROM_NUMBER
from tests.fakes.twilio_api import FakeTwilio
from tests.test_twilio_webhooks import signed, twilio_form
from workers.deliver import deliver
from workers.turn import run_turn

SUPPORT_NUMBER = "+15005550006"
SALES_NUMBER = "+15005550007"
CUSTOMER = "+14155550111"


@pytest.fixture
def routed(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"sms_services": f"{SUPPORT_NUMBER}=support,{SALES_NUMBER}=sales"}
    )


@pytest.fixture
def client(db: Engine, routed: Settings, waker: CeleryWaker) -> Iterator[TestClient]:
    with TestClient(create_app(routed, db, waker), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {API_KEY}"
        yield c


def text(client: TestClient, body: str, to: str) -> uuid.UUID:
    form = twilio_form(body, sid=f"SM{uuid.uuid4().hex}", From=CUSTOMER, To=to)
    answer = client.post("/webhooks/twilio/sms", data=form, headers=signed(form))
    assert answer.status_code == 200, answer.text
    with session_factory(client.app.state.dormouse.engine)() as s:
        return s.scalars(
            select(Conversation.id)
            .where(Conversation.address == CUSTOMER)
            .order_by(Conversation.last_activity_at.desc())
        ).first()


def answer_and_send(db: Engine, settings: Settings, waker: CeleryWaker, cid: uuid.UUID) -> None:
    run_turn(cid, engine=db, agents=AgentCatalog(), settings=settings, waker=waker)
    with session_factory(db)() as s:
        pending = s.scalars(
            select(OutboxRow.id).where(
                OutboxRow.conversation_id == cid, OutboxRow.status == "pending"
            )
        ).all()
    for outbox_id in pending:
        assert deliver(outbox_id, engine=db, settings=settings) == "sent"


def service_of(db: Engine, cid: uuid.UUID) -> str:
    with session_factory(db)() as s:
        return s.get_one(Conversation, cid).service


@pytest.mark.parametrize(
    ("number", "service"), [(SUPPORT_NUMBER, "support"), (SALES_NUMBER, "sales")]
)
def test_the_number_texted_picks_the_service_and_the_reply_comes_from_it(
    db: Engine,
    routed: Settings,
    waker: CeleryWaker,
    client: TestClient,
    fake_twilio: FakeTwilio,
    number: str,
    service: str,
) -> None:
    cid = text(client, "hello", to=number)
    assert service_of(db, cid) == service
    answer_and_send(db, routed, waker, cid)
    [reply] = fake_twilio.sent_to(CUSTOMER)
    assert reply.from_ == number
    assert f"the {service} assistant" in reply.body


def test_a_number_nobody_mapped_goes_to_the_default_service_from_the_default_number(
    db: Engine, routed: Settings, waker: CeleryWaker, client: TestClient, fake_twilio: FakeTwilio
) -> None:
    cid = text(client, "hello", to=FROM_NUMBER)
    assert service_of(db, cid) == "default"
    answer_and_send(db, routed, waker, cid)
    assert [r.from_ for r in fake_twilio.sent_to(CUSTOMER)] == [FROM_NUMBER]


def test_an_answer_to_an_outbound_text_continues_its_conversation(
    db: Engine, routed: Settings, waker: CeleryWaker, client: TestClient, fake_twilio: FakeTwilio
) -> None:
    # billing has no number of its own: it sends from TWILIO_FROM_NUMBER, as default does.
    started = client.post(
        "/v1/conversations",
        json={
            "service": "billing",
            "channel": "sms",
            "to": CUSTOMER,
            "message": "Your invoice is ready",
        },
    )
    assert started.status_code == 201, started.text
    billing = uuid.UUID(started.json()["id"])
    answer_and_send(db, routed, waker, billing)
    assert [r.from_ for r in fake_twilio.sent_to(CUSTOMER)] == [FROM_NUMBER]

    assert text(client, "what invoice?", to=FROM_NUMBER) == billing
    answer_and_send(db, routed, waker, billing)
    reply = fake_twilio.sent_to(CUSTOMER)[-1]
    assert '"what invoice?"' in reply.body and "default assistant" not in reply.body


def test_a_service_with_its_own_number_is_not_continued_through_another(
    db: Engine, routed: Settings, waker: CeleryWaker, client: TestClient
) -> None:
    support = text(client, "my order is late", to=SUPPORT_NUMBER)
    other = text(client, "hi", to=FROM_NUMBER)
    assert other != support
    assert (service_of(db, support), service_of(db, other)) == ("support", "default")
    assert text(client, "any news?", to=SUPPORT_NUMBER) == support
