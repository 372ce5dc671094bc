"""Slow model: N customers write at once to agents whose model takes seconds to answer.

One `dormouse up`-shaped stack on PostgreSQL + Redis (API, a turn worker, a delivery worker),
the model a local OpenAI-compatible server with a fixed latency, the provider a local server
speaking Twilio's Messages API. All N webhooks are sent at once; while the turns wait on the
model, an unrelated outbound message (`POST /v1/conversations` with a fixed text) is sent.

Reported per case: time until every reply reached the provider; p50/p99 of the overhead
beyond the model (reply - webhook - model latency); peak model requests in flight; turn
worker RSS; database connections open at peak; the unrelated message's delivery delay.

    .venv/bin/python -m benchmarks.slow_model            # full: 0.5/2/5 s x 50/200/1,000
    .venv/bin/python -m benchmarks.slow_model --quick    # 0.5 s x 50 and 2 s x 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import psutil
import redis
from sqlalchemy import text

from benchmarks.common import machine, scratch_postgres, today, write_section
from benchmarks.platform import ACCOUNT, API_KEY, REDIS_URL, TOKEN, percentile, signed_form
from tests.e2e.stack import free_port, wait_until
from tests.fakes.model_api import FakeModel
from tests.fakes.twilio_api import FakeTwilio

DATABASE = "dormouse_bench_slow"
HEADER = (
    "| model latency | customers at once | answered | all answered after | overhead p50 "
    "| overhead p99 | model requests in flight (peak) | turn worker RSS (peak) "
    "| DB connections (peak) | unrelated message | Dormouse CPU per turn "
    "| CPU floor (customers x CPU / cores) |"
)
TURN_CONCURRENCY = int(os.environ.get("BENCH_TURN_CONCURRENCY", "200"))  # the default
CORES = os.cpu_count() or 1
TURN_WORKERS = int(os.environ.get("BENCH_TURN_WORKERS", "1"))


class Stack:
    def __init__(self, database_url: str, workdir: Path, twilio: str, model: str) -> None:
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
            "TWILIO_API_URL": twilio,
            "MODEL_BASE_URL": model,
            "LOG_LEVEL": "WARNING",
        }
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> Stack:
        redis.Redis.from_url(REDIS_URL).flushdb()
        me = [sys.executable, "-m", "cli.main", "--log-level", "WARNING"]
        turns = ["worker", "--queues", "turns", "--turn-concurrency", str(TURN_CONCURRENCY)]
        commands = {
            "api": ["api", "--port", str(self.port)],
            **{f"turns{i}": turns for i in range(TURN_WORKERS)},
            "deliveries": ["worker", "--queues", "deliveries"],
        }
        for name, args in commands.items():
            log = (self.workdir / f"{name}.log").open("ab")
            self.procs[name] = subprocess.Popen(
                [*me, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._up, 30, "the API")
        time.sleep(4)  # the workers' pools
        return self

    def _up(self) -> bool:
        try:
            return httpx.get(self.base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def cpu(self) -> float:
        """CPU seconds used so far by every Dormouse process of the stack, children included."""
        total = 0.0
        for proc in self.procs.values():
            root = psutil.Process(proc.pid)
            for p in [root, *root.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        return total

    def rss(self, name: str) -> int:
        root = psutil.Process(self.procs[name].pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])

    def stop(self) -> None:
        for p in self.procs.values():
            os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@dataclass
class Case:
    latency: float
    customers: int
    all_answered: float
    answered: int
    overhead_p50: float
    overhead_p99: float
    peak_in_flight: int
    rss_mib: float
    peak_connections: int
    connections_by_process: dict[str, int]
    cpu_per_turn: float
    unrelated_delay: float | None


class Sampler:
    """Database connections (the bench database's backends) and worker RSS, every 100 ms."""

    def __init__(self, engine: object, stack: Stack) -> None:
        self.engine, self.stack = engine, stack
        self.connections = 0
        self.by_process: dict[str, int] = {}
        self.rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = text(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = :db "
            "AND pid <> pg_backend_pid() GROUP BY application_name"
        )
        with self.engine.connect() as conn:  # type: ignore[attr-defined]
            while not self._stop.is_set():
                # Each read in its own transaction: pg_stat_activity is a snapshot per
                # transaction. Only Dormouse's processes count (they name themselves).
                held = dict(conn.execute(query, {"db": DATABASE}).tuples().all())
                conn.commit()
                ours = {k: v for k, v in held.items() if k.startswith("dormouse")}
                if sum(ours.values()) > self.connections:
                    self.connections, self.by_process = sum(ours.values()), ours
                self.rss = max(self.rss, self.stack.rss("turns0"))
                time.sleep(0.1)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def burst(base: str, customers: int, first: int) -> dict[str, float]:
    """All webhooks at once (64 connections): the send time of each one accepted."""
    sent: dict[str, float] = {}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(i: int) -> None:
            sender = f"+1556{first + i:07d}"
            form, headers = signed_form(base, sender, f"hello {i}")
            t0 = time.time()
            for _ in range(3):  # as Twilio does: a dropped connection is retried (same Sid)
                try:
                    answer = await client.post(
                        base + "/webhooks/twilio/sms", data=form, headers=headers
                    )
                except httpx.TransportError:
                    continue
                if answer.status_code == 200:
                    sent[sender] = t0
                return

        await asyncio.gather(*(one(i) for i in range(customers)))
    return sent


def unrelated_outbound(base: str, to: str) -> float:
    started = time.time()
    answer = httpx.post(
        base + "/v1/conversations",
        json={"service": "billing", "channel": "sms", "to": to, "message": "Your invoice"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    answer.raise_for_status()
    return started


def run_case(
    stack: Stack,
    engine: object,
    model: FakeModel,
    twilio: FakeTwilio,
    latency: float,
    n: int,
    first: int,
) -> Case:
    """One burst of ``n`` new customers, numbered from ``first`` (every case its own)."""
    model.delay = latency
    model.max_in_flight = 0
    bystander = f"+1415555{first % 10_000:04d}"  # typed into the API: a valid number
    cpu_before = stack.cpu()
    with Sampler(engine, stack) as sampler:
        start = time.time()
        done: dict[str, dict[str, float]] = {}
        sender = threading.Thread(
            target=lambda: done.update(sent=asyncio.run(burst(stack.base, n, first)))
        )
        sender.start()
        model.wait_for_requests(len(model.requests) + min(n, 20), timeout=60)
        outbound_at = unrelated_outbound(stack.base, bystander)
        sender.join()
        sent = done["sent"]
        wait_until(
            lambda: all(twilio.sent_to(s) for s in sent), 600, f"{len(sent)} replies (1 each)"
        )
        ends = {s: twilio.sent_to(s)[0].created.timestamp() for s in sent}
    cpu_per_turn = (stack.cpu() - cpu_before) / max(1, len(sent))
    unrelated = twilio.sent_to(bystander)
    overheads = [ends[s] - t0 - latency for s, t0 in sent.items()]
    return Case(
        latency=latency,
        customers=n,
        all_answered=max(ends.values()) - start,
        answered=len(ends),
        overhead_p50=percentile(overheads, 50),
        overhead_p99=percentile(overheads, 99),
        peak_in_flight=model.max_in_flight,
        rss_mib=sampler.rss / 2**20,
        peak_connections=sampler.connections,
        connections_by_process=sampler.by_process,
        cpu_per_turn=cpu_per_turn,
        unrelated_delay=(unrelated[0].created.timestamp() - outbound_at) if unrelated else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cases = (
        [(0.5, 50), (2.0, 200)]
        if args.quick
        else [(lat, n) for lat in (0.5, 2.0, 5.0) for n in (50, 200, 1_000)]
    )
    twilio = FakeTwilio(ACCOUNT, TOKEN).start()
    model = FakeModel().start()
    results: list[Case] = []
    try:
        with scratch_postgres(DATABASE) as engine, TemporaryDirectory() as tmp:
            url = engine.url.render_as_string(hide_password=False)
            stack = Stack(url, Path(tmp), twilio.url, model.url).start()
            try:
                facts = machine(engine)
                # Warm-up, not reported: imports, pools and the agent loop come up on first use.
                run_case(stack, engine, model, twilio, 0.1, 10, first=0)
                first = 10
                for latency, n in cases:
                    results.append(run_case(stack, engine, model, twilio, latency, n, first))
                    first += n + 1
                    print(results[-1], flush=True)
            finally:
                stack.stop()
    finally:
        model.stop()
        twilio.stop()

    rows = "\n".join(
        f"| {c.latency:g} s | {c.customers:,} | {c.answered / c.customers:.0%} | "
        f"{c.all_answered:.1f} s | {c.overhead_p50 * 1000:.0f} ms | "
        f"{c.overhead_p99 * 1000:.0f} ms | {c.peak_in_flight} | {c.rss_mib:.0f} MiB | "
        f"{c.peak_connections} | "
        + (f"{c.unrelated_delay * 1000:.0f} ms |" if c.unrelated_delay is not None else "— |")
        + f" {c.cpu_per_turn * 1000:.0f} ms |"
        + f" {c.customers * c.cpu_per_turn / CORES:.1f} s |"
        for c in results
    )
    command = "make bench-quick" if args.quick else "make bench"
    body = f"""## Slow model ({"quick" if args.quick else "full"})

Measured {today()} on {facts}. Command: `{command}`.
API, one turn worker (`--turn-concurrency {TURN_CONCURRENCY}`, threads) and one delivery
worker (prefork, 2), PostgreSQL and Redis on loopback; the model is a local
OpenAI-compatible server answering every request after a fixed latency; N customers send
their first text at once. Overhead = reply at the provider - webhook sent - model latency.
The unrelated message is an outbound `POST /v1/conversations` with a fixed text, sent while
the turns wait on the model; its delay is from the POST to the provider.

{HEADER}
|---|---|---|---|---|---|---|---|---|---|---|---|
{rows}

Goals (2 s model, 200 customers): all answered within 6 s, overhead p50 at most 50 ms, the
unrelated message within 1 s, turn worker RSS under 600 MiB, at most 20 connections.

Dormouse CPU per turn is what the API, the turn worker and the delivery worker used,
divided by the turns (PostgreSQL's, the load generator's and the local servers' come on
top, on the same {CORES} cores). Its last column is the floor that CPU alone puts under a
burst: once the model's latency is covered by enough turns in flight, a burst is answered
no faster than the machine can do the turns' work, and the overhead beyond the model is
the wait for a core. Most of a turn worker's share is the model client (Pydantic AI and
the OpenAI SDK: about 11 ms a run against a local server, `make bench-agents` for the
rest). More cores, or turn workers on more machines, divide it.
"""
    print(body)
    write_section("slow-model-quick" if args.quick else "slow-model", body)


if __name__ == "__main__":
    main()
