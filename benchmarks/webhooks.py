"""What event webhooks cost: event writing's share of handling a message, and how many event
deliveries one worker process posts a second.

1. One message handled = ingest an SMS + the turn (offline agent) + delivering its reply
   (dev sink), on PostgreSQL, with no webhook endpoint and then with one endpoint
   subscribed to every type (so each message also writes its deliveries: started,
   received, sent). Wake-ups are counted, not published: the figure is the database work.
2. Deliveries a second: events of many conversations waiting, one process posting them
   (signing, one keep-alive connection) to a receiver on 127.0.0.1 that answers 200 at once
   (in its own process), as a delivery worker's task does.

    .venv/bin/python -m benchmarks.webhooks            # 600 messages, 3,000 deliveries
    .venv/bin/python -m benchmarks.webhooks --quick    # 150, 600
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from sqlalchemy import Engine, func, select, text

from agent.catalog import AgentCatalog
from benchmarks.common import CountingWaker, machine, scratch_postgres, today, write_section
from conversations import webhook_endpoints
from conversations.db import session_factory, transaction
from conversations.ingest import ingest
from conversations.models import OutboxRow, WebhookDelivery
from conversations.settings import Settings
from conversations.types import utcnow
from tests.factories import sms
from workers import webhooks as sender
from workers.deliver import deliver
from workers.turn import run_turn

DATABASE = "dormouse_hooks"  # the shared server's database this work may use
SETTINGS = Settings(history_window=20)
DEFAULTS = SETTINGS.default_policies()
TEXT = "Hi, I ordered a blue jacket last week and it has not arrived yet, can you check?"
NUMBERS = (f"+1555{n:07d}" for n in itertools.count(1))  # one new customer per message
RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def handle_one(engine: Engine, sender_number: str, waker: CountingWaker) -> float:
    started = time.perf_counter()
    with transaction(engine) as session:
        result = ingest(
            session,
            sms(TEXT, sender_number),
            service="default",
            now=utcnow(),
            defaults=DEFAULTS,
            help_text=SETTINGS.help_text,
        )
    assert result.conversation_id is not None
    run_turn(
        result.conversation_id, engine=engine, agents=AgentCatalog(), settings=SETTINGS, waker=waker
    )
    with session_factory(engine)() as session:
        outbox_id = session.scalar(
            select(OutboxRow.id).where(OutboxRow.conversation_id == result.conversation_id)
        )
    assert outbox_id is not None
    deliver(outbox_id, engine=engine, settings=SETTINGS)
    return time.perf_counter() - started


def per_message(engine: Engine, messages: int) -> tuple[float, float, int]:
    """Median seconds per message without and with an endpoint; interleaved in rounds so
    drift (autovacuum, the page cache) hits both alike. Also the deliveries written."""
    waker = CountingWaker()
    without: list[float] = []
    with_one: list[float] = []
    rounds = 6
    written = 0
    for _ in range(rounds):
        for subscribed in (False, True):
            with transaction(engine) as session:
                written += session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0
                session.execute(text("DELETE FROM webhook_endpoints"))  # and its deliveries
                if subscribed:
                    webhook_endpoints.create(
                        session,
                        url="http://127.0.0.1:9/never-posted",
                        event_types=[],
                        service=None,
                        description="bench",
                        now=utcnow(),
                    )
            into = with_one if subscribed else without
            for _ in range(messages // rounds):
                into.append(handle_one(engine, next(NUMBERS), waker))
    with session_factory(engine)() as session:
        written += session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0
    return statistics.median(without), statistics.median(with_one), written


def deliveries_per_second(engine: Engine, deliveries: int) -> tuple[float, int]:
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        with transaction(engine) as session:
            session.execute(text("DELETE FROM webhook_endpoints"))
            webhook_endpoints.create(
                session,
                url=f"http://127.0.0.1:{port}/hook",
                event_types=[],
                service=None,
                description="bench",
                now=utcnow(),
            )
        # Two events (started, received) a conversation: many conversations, so the order
        # rule never holds a post back; a backlog such as an outage leaves.
        for _ in range(deliveries // 2):
            with transaction(engine) as session:
                ingest(
                    session,
                    sms("hello", next(NUMBERS)),
                    service="default",
                    now=utcnow(),
                    defaults=DEFAULTS,
                    help_text=SETTINGS.help_text,
                )
        started = time.perf_counter()
        sent = 0
        while True:
            outcome = sender.send_due(None, engine=engine, settings=SETTINGS, limit=200)
            sent += outcome.delivered
            if outcome.delivered == 0:
                break
        elapsed = time.perf_counter() - started
        return sent / elapsed, sent
    finally:
        receiver.terminate()
        receiver.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    messages, deliveries = (150, 600) if args.quick else (600, 3000)
    with scratch_postgres(DATABASE) as engine:
        per_message(engine, 30)  # warm-up: connections, plans, imports
        with transaction(engine) as session:
            session.execute(text("DELETE FROM webhook_endpoints"))  # and the warm-up's deliveries
        without, with_one, written = per_message(engine, messages)
        rate, sent = deliveries_per_second(engine, deliveries)
        where = machine(engine)
    ratio = with_one / without
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    command = "make bench-webhooks" + ("" if not args.quick else " (--quick)")
    body = f"""## Event webhooks

{today()}, {where}. `{command}`; reproduce with `.venv/bin/python -m benchmarks.webhooks{
        " --quick" if args.quick else ""
    }`.

| | |
|---|---|
| one message handled (ingest + turn + reply delivered), no endpoint, median | {
        without * 1000:.2f} ms |
| the same with one endpoint subscribed to every event type | {with_one * 1000:.2f} ms |
| ratio | **{ratio:.2f} x** ({messages} messages each, interleaved in 6 rounds; {
        written
    } deliveries written) |
| event deliveries one process posts to a local receiver | **{rate:,.0f} a second** ({
        sent
    } posts, signed, one keep-alive connection, each claimed and settled in its own \
transaction) |

Load average when it ended: {load} (other work shares this machine; on a loaded one
the ratio swings run to run: rerun before trusting it).

Every event write also reads the enabled endpoints (one indexed read, in the transaction);
with an endpoint, each event adds an INSERT of its delivery. Not in these figures: the
broker wake-up each commit with events sends for webhooks (one Redis LPUSH, sent whether or
not an endpoint exists), and the receiver's own time (here it answers at once).
"""
    write_section("webhooks", body)
    print(body)


if __name__ == "__main__":
    main()
