"""Delivery through the twilio SDK to a local server that speaks Twilio's Messages API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, text

from conversations import outbox
from conversations.db import make_engine, session_factory, transaction
from conversations.models import Message, OutboxRow
from conversations.settings import Settings
from conversations.states import Role
from conversations.types import utcnow
from conversations.views import conversation_detail
from tests.conftest import FROM_NUMBER
from tests.factories import ingest_sms
from tests.fakes.twilio_api import FakeTwilio
from workers.deliver import deliver, reconcile

CUSTOMER = "+14155550100"


def reply(engine: Engine, text: str = "your order shipped") -> int:
    cid = ingest_sms(engine, "where is my order?").conversation_id
    with transaction(engine) as s:
        return outbox.enqueue_reply(
            s,
            conversation_id=cid,
            channel="sms",
            to=CUSTOMER,
            text=text,
            role=Role.AGENT,
            turn=1,
            now=utcnow(),
        )


def row(engine: Engine, outbox_id: int) -> OutboxRow:
    with session_factory(engine)() as s:
        return s.get_one(OutboxRow, outbox_id)


def outbound(engine: Engine) -> Message:
    with session_factory(engine)() as s:
        return s.scalars(select(Message).where(Message.direction == "outbound")).one()


def later(seconds: float = 10) -> object:
    return lambda: utcnow() + timedelta(seconds=seconds)


def test_a_reply_is_sent_with_a_status_callback_and_recorded(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    oid = reply(db)
    assert deliver(oid, engine=db, settings=settings) == "sent"

    [sent] = fake_twilio.messages
    assert (sent.to, sent.from_, sent.body) == (CUSTOMER, FROM_NUMBER, "your order shipped")
    assert sent.status_callback == "http://dormouse.test/webhooks/twilio/status"
    r = row(db, oid)
    assert (r.status, r.provider_id, r.attempts, r.via_sink) == ("sent", sent.sid, 1, False)
    assert (outbound(db).provider_id, outbound(db).delivery_status) == (sent.sid, "queued")
    # A second wake-up for the same row sends nothing.
    assert deliver(oid, engine=db, settings=settings) == "skipped"
    assert len(fake_twilio.messages) == 1


def test_opted_out_recipient_fails_permanently_and_visibly(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.script = [21610]
    oid = reply(db)
    assert deliver(oid, engine=db, settings=settings) == "failed"
    assert "21610" in (row(db, oid).last_error or "")
    message = outbound(db)
    assert message.delivery_status == "failed" and "21610" in (message.delivery_error or "")
    assert deliver(oid, engine=db, settings=settings, clock=later()) == "skipped"
    assert fake_twilio.create_attempts == 1


def test_transient_error_backs_off_then_succeeds(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    slow = settings.model_copy(update={"delivery_backoff_base": 60.0})
    fake_twilio.script = ["429"]
    oid = reply(db)
    assert deliver(oid, engine=db, settings=slow) == "pending"
    assert row(db, oid).next_attempt_at > utcnow() + timedelta(seconds=50)
    assert deliver(oid, engine=db, settings=slow) == "skipped"  # not due yet
    assert deliver(oid, engine=db, settings=slow, clock=later(61)) == "sent"
    assert len(fake_twilio.messages) == 1 and row(db, oid).attempts == 2


def test_timeout_after_twilio_queued_it_is_reconciled_not_resent(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.script = ["timeout-after-create"]
    oid = reply(db)
    assert deliver(oid, engine=db, settings=settings) == "sending"
    assert row(db, oid).status == "sending"
    assert deliver(oid, engine=db, settings=settings, clock=later()) == "skipped"

    assert reconcile(oid, engine=db, settings=settings, clock=later()) == "sent"
    [sent] = fake_twilio.messages
    assert row(db, oid).provider_id == sent.sid
    assert fake_twilio.create_attempts == 1


def test_server_error_before_queueing_is_reconciled_then_sent_once(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.script = ["500"]
    oid = reply(db)
    assert deliver(oid, engine=db, settings=settings) == "sending"
    assert reconcile(oid, engine=db, settings=settings, clock=later()) == "pending"
    assert deliver(oid, engine=db, settings=settings, clock=later(20)) == "sent"
    assert len(fake_twilio.messages) == 1 and fake_twilio.create_attempts == 2


def test_server_error_after_queueing_is_found_by_reconcile(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.script = ["500-after-create"]
    oid = reply(db)
    assert deliver(oid, engine=db, settings=settings) == "sending"
    assert reconcile(oid, engine=db, settings=settings, clock=later()) == "sent"
    assert len(fake_twilio.messages) == 1


def test_gives_up_after_max_attempts(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    limited = settings.model_copy(update={"delivery_max_attempts": 2})
    fake_twilio.script = ["429", "429", "429"]
    oid = reply(db)
    assert deliver(oid, engine=db, settings=limited) == "pending"
    assert deliver(oid, engine=db, settings=limited, clock=later()) == "failed"
    assert "gave up after 2 attempts" in (row(db, oid).last_error or "")


def test_without_twilio_credentials_replies_go_to_the_dev_sink(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    local = settings.model_copy(update={"twilio_account_sid": "", "twilio_auth_token": ""})
    oid = reply(db)
    assert deliver(oid, engine=db, settings=local) == "sent"
    r = row(db, oid)
    assert r.via_sink and r.provider_id and r.provider_id.startswith("devsink-")
    assert fake_twilio.create_attempts == 0
    with session_factory(db)() as s:  # what an operator reads says so, not "delivered"
        detail = conversation_detail(s, r.conversation_id)
    assert detail is not None
    [sunk] = [m for m in detail.messages if m.direction == "outbound"]
    assert sunk.via_sink


def test_status_callback_that_beats_the_send_commit_is_kept(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    """Twilio may call back before our 'sent' commit: the more advanced status must win."""
    from conversations.outbox import record_delivery_status

    sid = "SM" + "c" * 32
    fake_twilio.next_sids = [sid]
    with transaction(db) as s:
        record_delivery_status(
            s, channel="sms", provider_id=sid, status="delivered", error_code=None, now=utcnow()
        )
    oid = reply(db)
    assert deliver(oid, engine=db, settings=settings) == "sent"
    assert (outbound(db).provider_id, outbound(db).delivery_status) == (sid, "delivered")


def test_reconcile_never_takes_the_twilio_id_of_another_row_with_the_same_text(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    first = reply(db, "Thanks!")
    assert deliver(first, engine=db, settings=settings) == "sent"
    with session_factory(db)() as s:
        cid = s.get_one(OutboxRow, first).conversation_id
    with transaction(db) as s:
        second = outbox.enqueue_reply(
            s,
            conversation_id=cid,
            channel="sms",
            to=CUSTOMER,
            text="Thanks!",
            role=Role.AGENT,
            turn=2,
            now=utcnow(),
        )
    fake_twilio.script = ["500"]  # the second send never reached Twilio
    assert deliver(second, engine=db, settings=settings) == "sending"
    assert reconcile(second, engine=db, settings=settings, clock=later(60)) == "pending"
    assert deliver(second, engine=db, settings=settings, clock=later(120)) == "sent"
    assert [m.body for m in fake_twilio.messages] == ["Thanks!", "Thanks!"]
    assert row(db, first).provider_id != row(db, second).provider_id


def test_reconcile_waits_until_the_deliver_task_cannot_still_be_running(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.script = ["timeout-after-create"]
    oid = reply(db)
    assert deliver(oid, engine=db, settings=settings) == "sending"
    # 3 x TWILIO_HTTP_TIMEOUT (1 s here) + 5 s must pass, whatever DELIVERY_RECONCILE_AFTER.
    assert reconcile(oid, engine=db, settings=settings, clock=later(2)) == "skipped"
    assert reconcile(oid, engine=db, settings=settings, clock=later(9)) == "sent"


def test_a_send_is_recorded_even_if_the_database_connection_died_during_it(
    db: Engine, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    """A database restart while Twilio takes the message: the worker's pooled connection
    (used a moment ago, so not pinged) is dead when it records the send; it records it on a
    new one instead of leaving the row for reconcile."""
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite is a file opened in-process: there is no server connection to lose")
    worker_url = db.url.update_query_dict({"application_name": "worker-under-test"})
    worker_engine = make_engine(worker_url.render_as_string(hide_password=False))
    oid = reply(db)

    def restart() -> None:
        with db.connect() as admin:
            admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'worker-under-test'"
                )
            )
            admin.commit()

    fake_twilio.on_create = restart
    try:
        assert deliver(oid, engine=worker_engine, settings=settings) == "sent"
    finally:
        worker_engine.dispose()
    [sent] = fake_twilio.messages
    assert (row(db, oid).status, row(db, oid).provider_id) == ("sent", sent.sid)
