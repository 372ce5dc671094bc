"""Gauges that describe the database, read when Prometheus scrapes, not kept in memory.

Messages waiting for a turn and replies waiting to go out are rows: any process may have
changed them, so no process's memory knows their number. The API reads them at scrape time,
one bounded query each: both walk only the rows still waiting (the partial index of pending
messages; the outbox's (status, next_attempt_at) index), never the history.

Sent outbox rows are history and grow for ever: they are not counted here (the deliveries
counter says how many went out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from conversations.models import PENDING_MESSAGE, Message, OutboxRow
from conversations.states import OutboxStatus
from conversations.types import utcnow

# Counted per status: the rows still waiting, and the failures (few, and worth a gauge).
COUNTED_STATUSES = (OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.FAILED)


class BacklogCollector:
    """Messages pending, outbox rows by status and the age of the oldest of each."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine, self.clock = engine, clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "dormouse_backlog_query_ok",
            "1 if the database answered the backlog queries of this scrape, else 0 (and the "
            "backlog gauges are missing from it).",
        )
        try:
            pending, oldest_message, outbox, oldest_reply = self._read()
        except SQLAlchemyError:
            # A scrape must still answer when the database is down: say so, in a gauge.
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        now = self.clock()
        yield _gauge(
            "dormouse_messages_pending",
            "Inbound messages committed and waiting for a turn.",
            pending,
        )
        yield _gauge(
            "dormouse_messages_pending_oldest_age_seconds",
            "How long the oldest message waiting for a turn has waited (0 when none).",
            _age(now, oldest_message),
        )
        rows = GaugeMetricFamily(
            "dormouse_outbox_rows",
            "Outbox rows by status (pending, sending, failed; sent rows are not counted).",
            labels=["status"],
        )
        for status in COUNTED_STATUSES:
            rows.add_metric([status.value], outbox.get(status.value, 0))
        yield rows
        yield _gauge(
            "dormouse_outbox_oldest_pending_age_seconds",
            "How long the oldest pending outbox row has waited since it was written (0 when none).",
            _age(now, oldest_reply),
        )

    def _read(self) -> tuple[int, datetime | None, dict[str, int], datetime | None]:
        with self.engine.connect() as conn:
            pending, oldest_message = conn.execute(
                select(func.count(), func.min(Message.created_at)).where(PENDING_MESSAGE)
            ).one()
            by_status = conn.execute(
                select(OutboxRow.status, func.count(), func.min(OutboxRow.created_at))
                .where(OutboxRow.status.in_([s.value for s in COUNTED_STATUSES]))
                .group_by(OutboxRow.status)
            ).all()
        counts = {status: count for status, count, _ in by_status}
        oldest_reply = next(
            (oldest for status, _, oldest in by_status if status == OutboxStatus.PENDING), None
        )
        return int(pending), oldest_message, counts, oldest_reply


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0
