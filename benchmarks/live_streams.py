"""The live API's cost: how much later a reply reaches a streaming client than its turn
commits, and what 1,000 idle event streams cost one API process.

Real processes (API under uvicorn, turn and delivery workers) on PostgreSQL and Redis, the
offline agent. Results go into benchmarks/README.md (section ``live``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import psutil
from sqlalchemy import Engine, text

from benchmarks.common import machine, scratch_postgres, today, write_section
from benchmarks.platform import ACCOUNT, API_KEY, TOKEN, Dormouse, percentile
from tests.fakes.twilio_api import FakeTwilio

AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def interaction(
    client: httpx.AsyncClient, engine: Engine, conversation_id: str, said: str
) -> tuple[float, float]:
    """(seconds to the reply's new-message line, seconds to its commit) for one interact."""
    committed: list[float] = []
    start = time.perf_counter()

    async def watch_commit() -> None:
        query = text(
            "SELECT 1 FROM messages o JOIN messages i ON i.conversation_id = o.conversation_id"
            " WHERE i.conversation_id = :c AND i.direction = 'inbound' AND i.body = :said"
            " AND o.direction = 'outbound' AND o.id > i.id LIMIT 1"
        )
        while not committed:
            with engine.connect() as conn:
                found = conn.execute(query, {"c": uuid.UUID(conversation_id), "said": said})
                if found.first():
                    committed.append(time.perf_counter() - start)
                    return
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch_commit())
    streamed = None
    url = f"/v1/chat/conversations/{conversation_id}/interact"
    async with client.stream("POST", url, json={"text": said}, headers=AUTH) as answer:
        async for line in answer.aiter_lines():
            if not line.strip():
                continue
            event = json.loads(line)
            message = event.get("message") or {}
            if event["type"] == "new-message" and message.get("direction") == "outbound":
                streamed = time.perf_counter() - start
            if event["type"] in ("interaction-complete", "end-session", "error"):
                break
    await asyncio.wait_for(watcher, 30)
    assert streamed is not None, "no reply was streamed"
    return streamed, committed[0]


async def chat_latency(
    base: str, engine: Engine, chats: int, rounds: int
) -> list[tuple[float, float]]:
    found: list[tuple[float, float]] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for i in range(chats):
            body = {"service": "default", "user_id": f"bench-{uuid.uuid4().hex[:8]}-{i}"}
            async with client.stream(
                "POST", "/v1/chat/conversations", json=body, headers=AUTH
            ) as s:
                lines = [json.loads(line) async for line in s.aiter_lines() if line.strip()]
            conversation_id = lines[0]["conversation_id"]
            for r in range(rounds):
                found.append(await interaction(client, engine, conversation_id, f"q{i}-{r}"))
    return found


async def probe(base: str, path: str, requests: int) -> list[float]:
    times = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(requests):
            start = time.perf_counter()
            answer = await client.get(path, headers=AUTH)
            answer.raise_for_status()
            times.append(time.perf_counter() - start)
    return times


async def idle_streams(
    base: str, conversation_id: str, after: int, streams: int, api: psutil.Process, probes: int
) -> dict[str, float]:
    """Open ``streams`` event streams, measure other requests meanwhile, then one event's
    fan-out to all of them."""
    path = f"/v1/conversations/{conversation_id}"
    before = await probe(base, path, probes)
    rss_before = api.memory_info().rss
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=0)
    opened = asyncio.Event()
    ready = 0
    got: list[float] = []
    sent_at: list[float] = []

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal ready
        url = f"{path}/events?after={after}"
        async with client.stream("GET", url, headers=AUTH) as answer:
            assert answer.status_code == 200
            ready += 1
            if ready == streams:
                opened.set()
            async for line in answer.aiter_lines():
                if line.strip():
                    got.append(time.perf_counter() - sent_at[0])
                    return

    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(one(client)) for _ in range(streams)]
        await asyncio.wait_for(opened.wait(), 120)
        await asyncio.sleep(2)
        rss_open = api.memory_info().rss
        during = await probe(base, path, probes)
        # One operator handoff: one event every stream is waiting for.
        sent_at.append(time.perf_counter())
        handoff = await client.post(f"/v1/conversations/{conversation_id}/handoff", headers=AUTH)
        handoff.raise_for_status()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return {
        "rss_before": rss_before,
        "rss_open": rss_open,
        "p50_before": percentile(before, 50),
        "p99_before": percentile(before, 99),
        "p50_during": percentile(during, 50),
        "p99_during": percentile(during, 99),
        "fanout_p50": statistics.median(got),
        "fanout_max": max(got),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    chats, rounds = (5, 4) if args.quick else (20, 10)
    streams = 1_000
    probes = 100 if args.quick else 300

    fake = FakeTwilio(ACCOUNT, TOKEN).start()
    with scratch_postgres("dormouse_bench_live") as engine, TemporaryDirectory() as tmp:
        dormouse = Dormouse(engine.url.render_as_string(hide_password=False), Path(tmp), fake.url)
        dormouse.start()
        try:
            pairs = asyncio.run(chat_latency(dormouse.base, engine, chats, rounds))
            with engine.connect() as conn:
                conversation_id, after = conn.execute(
                    text(
                        "SELECT conversation_id, MAX(id) FROM events"
                        " GROUP BY conversation_id ORDER BY conversation_id LIMIT 1"
                    )
                ).one()
            api = psutil.Process(dormouse.procs[0].pid)
            idle = asyncio.run(
                idle_streams(dormouse.base, str(conversation_id), after, streams, api, probes)
            )
        finally:
            dormouse.stop()
            fake.stop()
        facts = machine(engine)
    streamed = [s for s, _ in pairs]
    commit = [c for _, c in pairs]

    def row(label: str, values: list[float], peer: list[float]) -> str:
        p50, p99 = percentile(values, 50), percentile(values, 99)
        ratio = p50 / percentile(peer, 50)
        return f"| {label} | {p50 * 1000:.1f} ms | {p99 * 1000:.1f} ms | {ratio:.2f} x |"

    def compare(label: str, before: float, during: float, unit: str, scale: float) -> str:
        return (
            f"| {label} | {before * scale:.1f} {unit} | {during * scale:.1f} {unit} "
            f"| {during / before:.2f} x |"
        )

    body = f"""## Live API ({"quick" if args.quick else "full"})

Measured {today()} on {facts}. Command: `make bench-live{"-quick" if args.quick else ""}`.
One API process (uvicorn), a turn worker and a delivery worker, PostgreSQL and Redis on
loopback, offline agent. {chats} chats of {rounds} interactions each, one at a time.

| interact → | p50 | p99 | p50 vs commit |
|---|---|---|---|
{row("the reply's `new-message` line on the stream", streamed, commit)}
{row("peer: the same reply committed (database polled every 2 ms)", commit, commit)}

{streams:,} idle `GET /v1/conversations/{{id}}/events` streams held open by one API process:

| | before | with the streams open | ratio |
|---|---|---|---|
{compare("API process RSS", idle["rss_before"], idle["rss_open"], "MiB", 2**-20)}
{compare("`GET /v1/conversations/{id}` p50", idle["p50_before"], idle["p50_during"], "ms", 1000)}
{compare("`GET /v1/conversations/{id}` p99", idle["p99_before"], idle["p99_during"], "ms", 1000)}

One event (an operator handoff) then reached all {streams:,} streams: median
{idle["fanout_p50"] * 1000:.0f} ms, the last {idle["fanout_max"] * 1000:.0f} ms after the
request.
"""
    print(body)
    write_section("live" + ("-quick" if args.quick else ""), body)


if __name__ == "__main__":
    main()
