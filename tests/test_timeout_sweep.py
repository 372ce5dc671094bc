"""The inactivity sweep on the real database, with an injected clock (nothing sleeps)."""

from __future__ import annotations

import itertools
import multiprocessing
import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, insert, select, text, update

from agent.catalog import AgentCatalog
from conversations import lifecycle
from conversations.db import make_engine, session_factory, transaction
from conversations.models import (
    Conversation,
    Customer,
    Event,
    MemoryEntry,
    Message,
    OutboxRow,
)
from conversations.timeout_store import recompute_batch, set_policy
from conversations.timeouts import Policy, Scope
from conversations.types import utcnow
from scheduler.timeouts import close_expired, due_query, send_due_nudges
from tests.conftest import Backend
from tests.factories import DEFAULTS, ingest_sms
from workers.wrapup import wrap_up

H = timedelta(hours=1)
M = timedelta(minutes=1)
T0 = datetime.fromisoformat("2026-03-01T12:00:00+00:00")


def settle(engine: Engine) -> None:
    """Mark every inbound message answered, as a committed turn would."""
    with transaction(engine) as s:
        s.execute(
            update(Message).where(Message.inbound_state == "pending").values(inbound_state="done")
        )


def policy(engine: Engine, scope: Scope, p: Policy) -> None:
    with transaction(engine) as s:
        set_policy(s, scope, p, actor="tests", now=T0)


def get(engine: Engine, cid: uuid.UUID) -> Conversation:
    with session_factory(engine)() as s:
        return s.get_one(Conversation, cid)


def outbox_bodies(engine: Engine) -> list[str]:
    with session_factory(engine)() as s:
        return list(s.scalars(select(OutboxRow.body).order_by(OutboxRow.id)))


def close(engine: Engine, now: datetime):  # type: ignore[no-untyped-def]
    with transaction(engine) as s:
        return close_expired(s, now=now, limit=100, defaults=DEFAULTS)


def nudge(engine: Engine, now: datetime):  # type: ignore[no-untyped-def]
    with transaction(engine) as s:
        return send_due_nudges(s, now=now, limit=100, defaults=DEFAULTS)


def test_closes_at_the_deadline_with_closing_message_and_wraps_up_once(db: Engine) -> None:
    policy(db, Scope(channel="sms"), Policy(2 * H, closing_message="Closing this chat."))
    cid = ingest_sms(db, "I need help with my order", now=T0).conversation_id
    settle(db)
    assert get(db, cid).expires_at == T0 + 2 * H

    assert close(db, T0 + 2 * H - timedelta(seconds=1)).closed == []
    result = close(db, T0 + 2 * H)
    assert result.closed == [cid] and len(result.outbox_ids) == 1
    conv = get(db, cid)
    assert (conv.status, conv.finish_reason, conv.expires_at) == ("finished", "timeout", None)
    assert outbox_bodies(db) == ["Closing this chat."]
    assert close(db, T0 + 3 * H).closed == []  # a second sweep finds nothing

    assert wrap_up(cid, engine=db, agents=AgentCatalog()) is True
    assert wrap_up(cid, engine=db, agents=AgentCatalog()) is False
    conv = get(db, cid)
    assert conv.summary and "I need help with my order" in conv.summary
    # The closing message answered nothing: no reply is counted for it.
    assert "The customer wrote 1 message; 0 replies were sent." in conv.summary
    with session_factory(db)() as s:
        [event] = s.scalars(select(Event).where(Event.type == "conversation.finished")).all()
        [ended] = s.scalars(select(Event).where(Event.type == "conversation.ended")).all()
        [memory] = s.scalars(select(MemoryEntry)).all()
    # The end as it happened (the live stream's), then the wrap-up's report, after it.
    assert event.data["finish_reason"] == "timeout" == ended.data["reason"]
    assert event.id > ended.id
    assert event.data["messages"] == {"inbound": 1, "outbound": 1}
    assert event.data["summary"] == conv.summary == memory.text
    assert event.data["duration_seconds"] >= 0
    assert event.data["usage"]["turns"] == 0  # settled by hand here, not by a turn


def test_nudges_once_before_closing(db: Engine) -> None:
    policy(db, Scope(), Policy(2 * H, timedelta(minutes=30), "Still there?", "Bye for now."))
    cid = ingest_sms(db, "hi", now=T0).conversation_id
    settle(db)
    assert nudge(db, T0 + 89 * timedelta(minutes=1)).closed == []
    assert nudge(db, T0 + 90 * timedelta(minutes=1)).closed == [cid]
    assert nudge(db, T0 + 100 * timedelta(minutes=1)).closed == []
    assert close(db, T0 + 2 * H).closed == [cid]
    assert outbox_bodies(db) == ["Still there?", "Bye for now."]


def recompute(engine: Engine, scope: Scope) -> None:
    with transaction(engine) as s:
        recompute_batch(s, scope, after=None, batch=100, defaults=DEFAULTS)


def test_an_overdue_conversation_nudged_by_a_new_policy_gets_its_time_to_answer(
    db: Engine,
) -> None:
    # Quiet for 5 minutes, then a 3-minute policy with a 1-minute nudge: both deadlines passed.
    cid = ingest_sms(db, "hi", now=T0).conversation_id
    settle(db)
    later = T0 + timedelta(minutes=5)
    policy(db, Scope(channel="sms"), Policy(3 * M, M, "Still there?", "Closing this chat."))
    recompute(db, Scope(channel="sms"))

    # One sweep: the nudge goes out, the close waits for the minute the nudge promised.
    assert nudge(db, later).closed == [cid]
    assert close(db, later).closed == []
    assert close(db, later + M - timedelta(seconds=1)).closed == []
    assert get(db, cid).expires_at == later + M

    # A recompute (another policy change) keeps the promise and does not nudge again.
    recompute(db, Scope(channel="sms"))
    assert get(db, cid).expires_at == later + M
    assert nudge(db, later + M).closed == []
    assert close(db, later + M).closed == [cid]
    assert outbox_bodies(db) == ["Still there?", "Closing this chat."]


def test_new_activity_moves_the_deadline_and_rearms_the_nudge(db: Engine) -> None:
    policy(db, Scope(), Policy(2 * H, timedelta(minutes=30), "Still there?"))
    cid = ingest_sms(db, "hi", now=T0).conversation_id
    settle(db)
    nudge(db, T0 + 95 * timedelta(minutes=1))
    ingest_sms(db, "yes, here", now=T0 + 100 * timedelta(minutes=1))
    settle(db)
    conv = get(db, cid)
    assert conv.expires_at == T0 + 100 * timedelta(minutes=1) + 2 * H
    assert conv.nudge_sent_at is None
    assert close(db, T0 + 2 * H + timedelta(minutes=1)).closed == []


def test_a_pending_message_or_a_running_turn_wins_over_the_deadline(db: Engine) -> None:
    pending = ingest_sms(db, "unanswered", sender="+14155550101", now=T0).conversation_id
    running = ingest_sms(db, "mid-turn", sender="+14155550102", now=T0).conversation_id
    with transaction(db) as s:
        s.execute(
            update(Message).where(Message.conversation_id == running).values(inbound_state="done")
        )
        s.execute(update(Conversation).where(Conversation.id == running).values(status="running"))
    assert close(db, T0 + 48 * H).closed == []
    assert get(db, pending).status == "suspended" and get(db, running).status == "running"


def test_handoff_pauses_the_timer_and_handback_restarts_it(db: Engine) -> None:
    cid = ingest_sms(db, "hi", now=T0).conversation_id
    settle(db)
    with transaction(db) as s:
        lifecycle.handoff(s, cid, reason="operator", now=T0 + H)
    assert get(db, cid).expires_at is None
    assert close(db, T0 + 100 * H).closed == []
    with transaction(db) as s:
        lifecycle.handback(s, cid, now=T0 + 100 * H, defaults=DEFAULTS)
    assert get(db, cid).expires_at == T0 + 100 * H + 24 * H


def test_never_means_never(db: Engine) -> None:
    policy(db, Scope(channel="sms"), Policy(None))
    cid = ingest_sms(db, "hi", now=T0).conversation_id
    settle(db)
    assert get(db, cid).expires_at is None
    assert close(db, T0 + 10_000 * H).closed == []


def test_a_policy_change_recomputes_open_conversations_it_governs(db: Engine) -> None:
    acme = ingest_sms(db, "a", sender="+14155550103", now=T0, service="acme").conversation_id
    other = ingest_sms(db, "b", sender="+14155550104", now=T0, service="other").conversation_id
    policy(db, Scope(service="acme"), Policy(H))
    with transaction(db) as s:
        progress = recompute_batch(
            s, Scope(service="acme"), after=None, batch=10, defaults=DEFAULTS
        )
    assert progress.processed == 1
    assert get(db, acme).expires_at == T0 + H
    assert get(db, other).expires_at == T0 + 24 * H  # not governed by that scope


def test_the_per_conversation_override_wins_and_can_be_cleared(db: Engine) -> None:
    cid = ingest_sms(db, "hi", now=T0).conversation_id
    with transaction(db) as s:
        lifecycle.set_timeout_override(s, cid, override=(True, 600), defaults=DEFAULTS)
    assert get(db, cid).expires_at == T0 + timedelta(seconds=600)
    with transaction(db) as s:
        lifecycle.set_timeout_override(s, cid, override=(True, None), defaults=DEFAULTS)
    assert get(db, cid).expires_at is None
    with transaction(db) as s:
        lifecycle.set_timeout_override(s, cid, override=(False, None), defaults=DEFAULTS)
    assert get(db, cid).expires_at == T0 + 24 * H


def _sweeper(database_url: str, phase: str, now: str) -> list[str]:
    """One of several concurrent sweep processes (spawned: its own interpreter and engine)."""
    engine = make_engine(database_url)
    step = send_due_nudges if phase == "nudge" else close_expired
    done: list[str] = []
    while True:
        with transaction(engine) as s:
            result = step(s, now=datetime.fromisoformat(now), limit=25, defaults=DEFAULTS)
        done += [str(c) for c in result.closed]
        if not result.closed:
            break
    if phase == "close":  # every process also tries to wrap up every conversation
        with session_factory(engine)() as s:
            ids = s.scalars(select(Conversation.id)).all()
        for cid in ids:
            wrap_up(cid, engine=engine, agents=AgentCatalog())
    engine.dispose()
    return done


def test_concurrent_sweep_processes_nudge_close_and_wrap_up_each_conversation_once(
    db: Engine, migrated: Backend
) -> None:
    policy(db, Scope(), Policy(2 * H, timedelta(minutes=30), "Still there?", "Closing."))
    n = 120
    for i in range(n):
        ingest_sms(db, f"hello {i}", sender=f"+1415555{i:04}", now=T0)
    settle(db)

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        nudged = pool.starmap(
            _sweeper,
            [(migrated.database_url, "nudge", (T0 + 100 * timedelta(minutes=1)).isoformat())] * 4,
        )
        closed = pool.starmap(
            _sweeper, [(migrated.database_url, "close", (T0 + 3 * H).isoformat())] * 4
        )

    for per_process in (nudged, closed):
        everyone = list(itertools.chain.from_iterable(per_process))
        assert len(everyone) == len(set(everyone)) == n  # each one once, by exactly one process
    with session_factory(db)() as s:
        bodies = s.execute(select(OutboxRow.body, func.count()).group_by(OutboxRow.body)).all()
        events = s.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.type == "conversation.finished", Event.data["summary"].is_not(None))
        )
        memories = s.scalar(select(func.count()).select_from(MemoryEntry))
    assert dict(bodies) == {"Still there?": n, "Closing.": n}
    assert events == n and memories == n


def test_the_sweep_reads_due_rows_through_the_index(db: Engine, migrated: Backend) -> None:
    with transaction(db) as s:
        customer = Customer()
        s.add(customer)
        s.flush()
        now = utcnow()
        s.execute(
            insert(Conversation),
            [
                {
                    "id": uuid.uuid4(),
                    "customer_id": customer.id,
                    "service": f"s{i}",
                    "channel": "sms",
                    "address": "+14155550100",
                    "status": "suspended",
                    "claim_attempts": 0,
                    "turn_count": 0,
                    "inbound_count": 0,
                    "last_activity_at": now,
                    "created_at": now,
                    "updated_at": now,
                    "expires_at": now + timedelta(days=1),
                    "timeout_override_set": False,
                }
                for i in range(20_000)
            ],
        )
    query = due_query(Conversation.expires_at, now=utcnow(), limit=500, skip_locked=False)
    with db.connect() as conn:
        if db.dialect.name == "postgresql":
            conn.execute(text("ANALYZE conversations"))
            sql = str(query.compile(db, compile_kwargs={"literal_binds": True}))
            plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
        else:
            sql = str(query.compile(db, compile_kwargs={"literal_binds": True}))
            plan = "\n".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
    assert "ix_conversations_status_expires" in plan, plan
    assert "Seq Scan" not in plan and "SCAN conversations\n" not in plan + "\n", plan
