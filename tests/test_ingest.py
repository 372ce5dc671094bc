"""Ingest on the real database: exactly-once, convergence under concurrency, lifecycle."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, func, select, update

from conversations.db import make_engine, session_factory, transaction
from conversations.ingest import ingest_committed
from conversations.models import Conversation, Customer, Identity, Message
from tests.factories import DEFAULTS, HELP, ingest_sms, sms


def count(engine: Engine, model: type) -> int:
    with session_factory(engine)() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_same_provider_id_twice_is_one_message(db: Engine) -> None:
    first = ingest_sms(db, "hi", sid="SM1")
    again = ingest_sms(db, "hi", sid="SM1")
    assert (again.duplicate, again.message_id, again.conversation_id) == (
        True,
        first.message_id,
        first.conversation_id,
    )
    assert count(db, Message) == 1


def test_concurrent_first_messages_from_one_address_converge(db: Engine) -> None:
    """Ten webhooks at once from a new number: one customer, one conversation, ten messages."""
    messages = [sms(f"message {i}", sender="+14155550177") for i in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(
            pool.map(
                lambda m: ingest_committed(
                    db, m, service="default", defaults=DEFAULTS, help_text=HELP
                ),
                messages,
            )
        )
    assert len({r.conversation_id for r in results}) == 1
    assert (count(db, Customer), count(db, Identity), count(db, Conversation)) == (1, 1, 1)
    assert count(db, Message) == 10


def test_concurrent_retries_of_one_webhook_store_it_once(db: Engine) -> None:
    message = sms("retry storm", sid="SM-storm")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(
                lambda _: ingest_committed(
                    db, message, service="default", defaults=DEFAULTS, help_text=HELP
                ),
                range(8),
            )
        )
    assert sum(not r.duplicate for r in results) == 1
    assert count(db, Message) == 1


def test_a_message_after_the_conversation_finished_opens_a_new_one(db: Engine) -> None:
    first = ingest_sms(db, "hello").conversation_id
    with transaction(db) as s:
        s.execute(update(Conversation).values(status="finished", finish_reason="agent"))
    second = ingest_sms(db, "hello again").conversation_id
    assert second != first
    with session_factory(db)() as s:
        customers = s.scalars(select(Conversation.customer_id)).all()
    assert len(set(customers)) == 1  # same customer, new conversation


def test_different_numbers_are_different_customers(db: Engine) -> None:
    a = ingest_sms(db, "a", sender="+14155550101").conversation_id
    b = ingest_sms(db, "b", sender="+14155550102").conversation_id
    assert a != b and count(db, Customer) == 2


def test_many_customers_open_and_reopen_conversations(db: Engine) -> None:
    """Enough rounds on one connection for PostgreSQL to plan the statements generically
    (psycopg prepares a query from its sixth run, the server plans it generically from its
    sixth execution): the open-conversation index must still be found by such plans."""
    engine = make_engine(db.url.render_as_string(hide_password=False))  # one connection
    numbers = [f"+1415555{i:04d}" for i in range(12)]
    try:
        first = {n: ingest_sms(engine, "hi", sender=n).conversation_id for n in numbers}
        with transaction(engine) as s:
            s.execute(update(Conversation).values(status="finished", finish_reason="agent"))
        second = {n: ingest_sms(engine, "back again", sender=n).conversation_id for n in numbers}
        third = {n: ingest_sms(engine, "and again", sender=n).conversation_id for n in numbers}
    finally:
        engine.dispose()
    assert all(first[n] != second[n] == third[n] for n in numbers)
    with session_factory(db)() as s:
        reopened = s.scalars(select(Conversation).where(Conversation.status != "finished")).all()
    assert sorted(c.address for c in reopened) == numbers
    assert {c.inbound_count for c in reopened} == {2}
    assert all(c.expires_at is not None and c.channel == "sms" for c in reopened)
    assert (count(db, Customer), count(db, Conversation), count(db, Message)) == (12, 24, 36)
