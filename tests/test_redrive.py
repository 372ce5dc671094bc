"""The redrive sweep on the real database and broker: lost work is woken once, not per pass."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from conversations.settings import Settings
from conversations.types import utcnow
from conversations.wakeup import TURN_QUEUE, TURN_TASK, CeleryWaker
from scheduler.sweeps import Window, redrive_once
from tests.conftest import broker_client, queued
from tests.factories import ingest_sms

GRACE = timedelta(seconds=15)
REWAKE = timedelta(seconds=60)


def sweep(db: Engine, waker: CeleryWaker, at: timedelta) -> dict[str, int]:
    window = Window(now=START + at, grace=GRACE, rewake_after=REWAKE)
    return redrive_once(db, waker, window, reconcile_after=timedelta(seconds=60), limit=500)


START = utcnow()


def turn_wakeups(settings: Settings) -> list[tuple[str, list[object]]]:
    return [q for q in queued(settings.broker_url, TURN_QUEUE) if q[0] == TURN_TASK]


def test_a_backlog_is_woken_once_until_it_needs_work_anew_or_the_wakeup_is_old(
    db: Engine, settings: Settings, waker: CeleryWaker
) -> None:
    # Three customers wrote while the broker was down: their wake-ups never left.
    cids = [ingest_sms(db, "hi", f"+1415555020{i}", now=START).conversation_id for i in range(3)]
    assert sweep(db, waker, timedelta(seconds=5))["turns"] == 0  # still within the grace

    assert sweep(db, waker, timedelta(seconds=20))["turns"] == 3
    # The workers are behind: passes every few seconds do not pile up more wake-ups.
    for seconds in (25, 30, 45, 70):
        assert sweep(db, waker, timedelta(seconds=seconds))["turns"] == 0
    assert sorted(args[0] for _, args in turn_wakeups(settings)) == sorted(map(str, cids))

    # A new message after our wake-up is new work: its conversation is woken again (once).
    ingest_sms(db, "anyone?", "+14155550200", now=START + timedelta(seconds=50))
    assert sweep(db, waker, timedelta(seconds=75))["turns"] == 1
    assert sweep(db, waker, timedelta(seconds=76))["turns"] == 0

    # A minute after our wake-up nothing has run: the broker lost it too, so wake again.
    assert sweep(db, waker, timedelta(seconds=81))["turns"] == 2
    assert sweep(db, waker, timedelta(seconds=136))["turns"] == 1
    assert len(turn_wakeups(settings)) == 3 + 1 + 2 + 1


def test_a_wakeup_the_broker_refused_is_not_counted_as_sent(db: Engine, settings: Settings) -> None:
    ingest_sms(db, "hi", "+14155550209", now=START)
    dead = CeleryWaker(settings=settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"}))
    sweep(db, dead, timedelta(seconds=20))  # publishing fails: nothing stamped
    assert broker_client(settings.broker_url).llen(TURN_QUEUE) == 0
    assert sweep(db, CeleryWaker(settings=settings), timedelta(seconds=21))["turns"] == 1
