"""Platform overhead: real API (uvicorn), Celery worker, PostgreSQL and Redis on loopback.

Load comes from this process (a separate one from Dormouse's), paced and bounded in count
and time; the provider is a local server speaking Twilio's Messages API, in this process
too, so send and receive times share one clock.

1. The floor, in the same run: the broker hops and SQL a turn needs, by hand with redis-py
   and psycopg (two enqueue/dequeue round trips; the turn's writes in one transaction).
2. Turn latency from a signed webhook POST to the provider receiving the reply, at paced
   rates; p50/p95/p99 and p50 against the floor.
3. Ingest: webhooks accepted per second by one API process.
4. Worker RSS after a first and a later count of turns.

    make bench          # full
    make bench-quick    # under a minute, small counts
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory
from urllib.parse import urlencode

import httpx
import psutil
import psycopg
import redis
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator

from benchmarks.common import machine, scratch_postgres, today, write_section
from tests.e2e.stack import free_port, wait_until
from tests.fakes.twilio_api import FakeTwilio

ACCOUNT = "AC" + "7" * 32
TOKEN = "bench-token-" + "z" * 20
API_KEY = "bench-key"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
# Worker memory is measured on turns fed in batches faster than one worker answers them.
FEED_BATCH = 1_000
FEED_RATE = 100


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def floor_per_turn(database_url: str, samples: int) -> float:
    """Two broker round trips and the turn's SQL in one transaction, done by hand."""
    r = redis.Redis.from_url(REDIS_URL)
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    times = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.cursor()
        customer, conversation = uuid.uuid4(), uuid.uuid4()
        cur.execute(
            "INSERT INTO customers (id, created_at, attributes) VALUES (%s, now(), '{}')",
            (customer,),
        )
        cur.execute(
            "INSERT INTO conversations (id, customer_id, service, channel, address, status,"
            " claim_attempts, turn_count, inbound_count, last_activity_at, created_at, updated_at,"
            " timeout_override_set, wants_turn, context) VALUES (%s, %s, 'floor', 'sms', '+1',"
            " 'suspended', 0, 0, 0, now(), now(), now(), false, false, '{}')",
            (conversation, customer),
        )
        for i in range(samples):
            start = time.perf_counter()
            r.lpush("floor", b"wake")
            r.brpop("floor", timeout=1)
            with conn.transaction():
                cur.execute(
                    "INSERT INTO messages (conversation_id, direction, role, channel, address,"
                    " body, media, meta, provider_id, inbound_state, created_at) VALUES"
                    " (%s, 'inbound', 'customer', 'sms', '+1', 'hi', '[]', '{}', %s, 'pending',"
                    " now()) RETURNING id",
                    (conversation, f"floor-{i}"),
                )
                cur.execute(
                    "UPDATE conversations SET status = 'suspended', turn_count = turn_count + 1,"
                    " last_activity_at = now() WHERE id = %s",
                    (conversation,),
                )
                cur.execute(
                    "INSERT INTO messages (conversation_id, direction, role, channel, address,"
                    " body, media, meta, created_at) VALUES (%s, 'outbound', 'agent', 'sms', '+1',"
                    " 'reply', '[]', '{}', now()) RETURNING id",
                    (conversation,),
                )
                message_id = cur.fetchone()[0]  # type: ignore[index]
                cur.execute(
                    "INSERT INTO outbox (message_id, conversation_id, channel, to_address, body,"
                    " status, attempts, next_attempt_at, idempotency_key, via_sink, created_at,"
                    " updated_at) VALUES (%s, %s, 'sms', '+1', 'reply', 'sent', 1, now(), %s,"
                    " false, now(), now())",
                    (message_id, conversation, uuid.uuid4()),
                )
            r.lpush("floor", b"deliver")
            r.brpop("floor", timeout=1)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


class Dormouse:
    """API + one worker as real processes."""

    def __init__(self, database_url: str, workdir: Path, provider: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATA_DIR": str(workdir),
            "DATABASE_URL": database_url,
            "BROKER_URL": REDIS_URL,
            "PUBLIC_URL": self.base,
            "DORMOUSE_API_KEYS": f"b:{API_KEY}",
            "EMAIL_INBOUND_SECRET": "bench-inbound-secret",
            "CHAT_WEBHOOK_SECRET": "whsec_YmVuY2gtY2hhdC13ZWJob29rLXNlY3JldC0wMTIz",
            "CONSOLE_SECRET": "bench-console-secret",
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_FROM_NUMBER": "+15550000000",
            "TWILIO_API_URL": provider,
            "LOG_LEVEL": "WARNING",
            "REDRIVE_INTERVAL": "30",
            "WEBHOOK_ALLOW_PRIVATE": "true",  # receivers on 127.0.0.1
        }
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        redis.Redis.from_url(REDIS_URL).flushdb()
        me = [sys.executable, "-m", "cli.main", "--log-level", "WARNING"]
        for name, args in (
            ("api", ["api", "--port", str(self.port)]),
            ("turns", ["worker", "--queues", "turns"]),
            ("deliveries", ["worker", "--queues", "deliveries", "--concurrency", "2"]),
        ):
            log = (self.workdir / f"{name}.log").open("ab")
            proc = subprocess.Popen(
                [*me, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.procs.append(proc)
        wait_until(lambda: self._up(), 30, "the API")
        time.sleep(3)  # the worker's pool

    def _up(self) -> bool:
        try:
            return httpx.get(self.base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def worker_rss(self) -> int:
        total = 0
        for proc in self.procs[1:]:  # the turn worker and the delivery worker
            worker = psutil.Process(proc.pid)
            total += sum(p.memory_info().rss for p in [worker, *worker.children(recursive=True)])
        return total

    def pause_worker(self, paused: bool) -> None:
        """Stop the worker's processes (SIGSTOP) so the API has the cores to itself."""
        for proc in self.procs[1:]:
            os.killpg(proc.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> None:
        for p in self.procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def signed_form(base: str, sender: str, body: str) -> tuple[dict[str, str], dict[str, str]]:
    form = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": ACCOUNT,
        "From": sender,
        "To": "+15550000000",
        "Body": body,
        "NumMedia": "0",
    }
    url = base + "/webhooks/twilio/sms"
    return form, {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, form)}


async def paced(base: str, rate: float, seconds: float, first: int) -> dict[str, float]:
    """Send rate x seconds webhooks, each from a new number; return the send time of each
    one the API accepted (200)."""
    sent: dict[str, float] = {}
    total = round(rate * seconds)
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=64)) as client:
        start = time.perf_counter()

        async def one(i: int) -> None:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            sender = f"+1555{first + i:07d}"  # numbers first, first+1, …: one customer each
            form, headers = signed_form(base, sender, f"hello {i}")
            t0 = time.time()
            try:
                response = await client.post(
                    base + "/webhooks/twilio/sms", data=form, headers=headers
                )
            except httpx.HTTPError:
                return  # not accepted in time: counted as not answered
            if response.status_code == 200:
                sent[sender] = t0

        await asyncio.gather(*(one(i) for i in range(total)))
    return sent


def latencies(fake: FakeTwilio, sent: dict[str, float], deadline: float) -> list[float]:
    wait_until(lambda: all(fake.sent_to(n) for n in sent) or time.time() > deadline, 120, "replies")
    out = []
    for number, t0 in sent.items():
        got = fake.sent_to(number)
        if got:
            out.append(got[0].created.timestamp() - t0)
    return out


def backlog_grows(fake: FakeTwilio, sent: dict[str, float]) -> tuple[bool, list[float]]:
    """True if replies fall behind: not all answered soon after the load stops, or the last
    quarter of the run waited clearly longer than the first (a queue building up)."""
    lat = latencies(fake, sent, time.time() + 10)
    if len(lat) < len(sent):
        return True, lat
    # latencies() keeps the order of ``sent``: pair each wait with its send time.
    ordered = [t for _, t in sorted(zip(sent.values(), lat, strict=True))]
    quarter = max(1, len(ordered) // 4)
    first, last = ordered[:quarter], ordered[-quarter:]
    return statistics.median(last) > 2 * statistics.median(first) + 0.05, lat


def table_row(label: str, total: int, accepted: int, lat: list[float], floor: float) -> str:
    p50, p95, p99 = (percentile(lat, p) for p in (50, 95, 99))
    return (
        f"| {label} | {total} | {accepted / total:.0%} | {len(lat) / total:.0%} | "
        f"{p50 * 1000:.0f} ms | {p95 * 1000:.0f} ms | {p99 * 1000:.0f} ms | {p50 / floor:.1f} x |"
    )


def drain(fake: FakeTwilio, replies: int, timeout: float = 900) -> None:
    """Wait until the provider got ``replies`` messages: one load's backlog must not be
    measured as the next one's latency."""
    wait_until(lambda: len(fake.messages) >= replies, timeout, f"{replies} replies (drain)")


def sustained(
    base: str, fake: FakeTwilio, rates: tuple[int, ...], seconds: float, numbers: int
) -> tuple[int, list[float], int]:
    """The highest paced rate whose backlog does not grow, with its latencies."""
    best, best_lat = 0, [float("nan")]
    for rate in rates:
        sent = asyncio.run(paced(base, rate, seconds, numbers))
        numbers += int(rate * seconds)
        grows, lat = backlog_grows(fake, sent)
        drain(fake, len(fake.messages) + len(sent) - len(lat))
        print(f"sustained? {rate}/s: {'backlog grows' if grows else 'keeps up'}", flush=True)
        if grows:
            break
        best, best_lat = rate, lat
        time.sleep(2)
    return best, best_lat, numbers


def feed(dormouse: Dormouse, fake: FakeTwilio, turns: int, numbers: int) -> int:
    """Webhooks from new numbers until the worker has answered ``turns`` in all (since it
    started), in batches it drains before the next; returns the next unused number."""
    started, first = time.time(), len(fake.messages)
    while (done := len(fake.messages)) < turns:
        batch = min(FEED_BATCH, turns - done)
        sent = asyncio.run(paced(dormouse.base, FEED_RATE, batch / FEED_RATE, numbers))
        numbers += batch
        drain(fake, done + len(sent))
        if turns >= 10 * FEED_BATCH and (done // 10_000) != (len(fake.messages) // 10_000):
            rate = (len(fake.messages) - first) / max(1e-9, time.time() - started)
            print(
                f"{len(fake.messages):,} turns, {rate:.0f}/s, worker RSS"
                f" {dormouse.worker_rss() / 2**20:.0f} MiB",
                flush=True,
            )
    print(f"worker RSS after {turns:,} turns: {dormouse.worker_rss() / 2**20:.0f} MiB", flush=True)
    return numbers


WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("WRK %d %d %d %f\\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.timeout,
    latency:percentile(99)))
end
"""


def wrk(url: str, script: str, seconds: int, connections: int = 32) -> tuple[float, float, int]:
    """Requests per second, p99 (s) and failed requests, as measured by wrk: a load
    generator in C, so the figure is the server's, not a Python client's."""
    with TemporaryDirectory() as tmp:
        lua = Path(tmp) / "load.lua"
        lua.write_text(script + WRK_REPORT)
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(lua),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK "))
    requests, duration_us, failed, p99_us = line.split()[1:]
    return int(requests) / (int(duration_us) / 1e6), float(p99_us) / 1e6, int(failed)


def signed_requests_script(base: str, count: int, data: Path) -> str:
    """A wrk script cycling through ``count`` pre-signed webhooks, each from a new number
    (wrk's Lua has no HMAC-SHA1, so Python signs them ahead, one per line of ``data``)."""
    with data.open("w") as out:
        for i in range(count):
            form, headers = signed_form(base, f"+1666{i:07d}", "ingest")
            out.write(f"{headers['X-Twilio-Signature']}\t{urlencode(form)}\n")
    return f"""
local signed = {{}}
for line in io.lines("{data}") do
  local signature, body = line:match("([^\\t]+)\\t(.*)")
  signed[#signed + 1] = {{signature, body}}
end
local n = 0
request = function()
  -- formatted here, not at load: wrk fills in the Host header only once running
  n = n + 1
  local item = signed[(n - 1) % #signed + 1]
  return wrk.format("POST", "/webhooks/twilio/sms",
    {{["X-Twilio-Signature"] = item[1],
     ["Content-Type"] = "application/x-www-form-urlencoded"}}, item[2])
end
"""


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("the ingest figure needs wrk on PATH: make bench-tools installs it")
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rates = (25, 50) if args.quick else (50, 100, 200, 400)
    seconds = 3 if args.quick else 10
    rss_turns = (100, 1_000) if args.quick else (1_000, 100_000)

    fake = FakeTwilio(ACCOUNT, TOKEN).start()
    rows = []
    with scratch_postgres("dormouse_bench_platform") as engine, TemporaryDirectory() as tmp:
        database_url = engine.url.render_as_string(hide_password=False)
        floor = floor_per_turn(database_url, 200)
        dormouse = Dormouse(database_url, Path(tmp), fake.url)
        dormouse.start()
        numbers = 0
        try:
            # Also the warm-up: the latencies below are measured on a worker past its first
            # turns, not on one still importing and connecting.
            numbers = feed(dormouse, fake, rss_turns[0], numbers)
            rss = {rss_turns[0]: dormouse.worker_rss()}
            accepted = len(fake.messages)
            for rate in rates:
                total = int(rate * seconds)
                sent = asyncio.run(paced(dormouse.base, rate, seconds, numbers))
                numbers += total
                lat = latencies(fake, sent, time.time() + 60) or [float("nan")]
                drain(fake, accepted := accepted + len(sent))
                rows.append(table_row(f"{rate}/s", total, len(sent), lat, floor))
                print(rows[-1], flush=True)
            drain(fake, accepted)
            top, top_lat, numbers = sustained(
                dormouse.base,
                fake,
                (20, 40) if args.quick else (10, 15, 20, 25, 30, 40, 50, 60),
                4 if args.quick else 10,
                numbers,
            )
            total = len(top_lat)
            rows.append(table_row(f"**{top}/s (highest sustained)**", total, total, top_lat, floor))
            print(rows[-1], flush=True)
            numbers = feed(dormouse, fake, rss_turns[1], numbers)
            rss[rss_turns[1]] = dormouse.worker_rss()
            # Wake-ups pile up in Redis meanwhile; the worker answers them after.
            dormouse.pause_worker(True)
            ingest_seconds = 3 if args.quick else 10
            bare, bare_p99, _ = wrk(dormouse.base + "/healthz", "", ingest_seconds)
            # Pre-signed, one per request: more than even the peer's rate could use.
            script = signed_requests_script(
                dormouse.base, int(bare * ingest_seconds * 1.2), Path(tmp) / "signed.txt"
            )
            ingest, ingest_p99, failed = wrk(dormouse.base, script, ingest_seconds)
            dormouse.pause_worker(False)
            if failed:
                raise SystemExit(f"{failed} webhooks were refused during the ingest run")
        finally:
            dormouse.stop()
            fake.stop()
        facts = machine(engine)
    first, last = rss_turns
    ingest_row = f"{ingest:.0f} /s | {ingest_p99 * 1000:.0f} ms | {ingest / bare:.2f} x"
    body = f"""## Platform overhead ({"quick" if args.quick else "full"})

Measured {today()} on {facts}. Command: `make bench{"-quick" if args.quick else ""}`.
One API process (uvicorn), a turn worker (threads) and a delivery worker (prefork, 2
children), as `dormouse up` runs them, PostgreSQL and Redis on
loopback, offline agent, a local server speaking Twilio's Messages API. Each webhook comes
from a new number, so nothing coalesces: one webhook, one turn, one reply.

Floor (same run): two Redis enqueue/dequeue round trips and the turn's five statements in
one transaction, by hand with redis-py and psycopg: **{floor * 1000:.2f} ms**.

| paced rate | webhooks | accepted | answered within 60 s | p50 | p95 | p99 | p50 vs floor |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Latency is from the signed webhook POST to the provider server receiving the reply. The
last row is the highest rate (of those tried, after the paced ones) at which the backlog did
not grow: every reply within 10 s of the end, and the last quarter's median wait under twice
the first quarter's.

| one API process, wrk with 32 connections, worker paused | per second | p99 | ratio |
|---|---|---|---|
| signed webhooks accepted (verified, committed, woken) | {ingest_row} |
| peer: GET /healthz, same process and client | {bare:.0f} /s | {bare_p99 * 1000:.0f} ms | 1.00 x |

| RSS of both workers, turns since start | after {first:,} | after {last:,} | ratio |
|---|---|---|---|
| | {rss[first] / 2**20:.0f} MiB | {rss[last] / 2**20:.0f} MiB | {rss[last] / rss[first]:.2f} x |

Goals on this 2-core machine: p50 at most 3 x the floor and p99 at most 50 ms at 200/s;
at least 1,000 webhooks/s per API process; RSS after 100,000 turns within 10% of after
1,000.
"""
    print(body)
    write_section("platform" + ("-quick" if args.quick else ""), body)


if __name__ == "__main__":
    main()
