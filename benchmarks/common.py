"""Shared pieces of the benchmarks: a scratch PostgreSQL database, timing, machine facts."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from conversations.db import make_engine
from conversations.migrate import migrate
from conversations.settings import Settings

POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# BENCH_README: elsewhere (benchmarks.compare), so a comparison leaves the figures of record.
README = Path(os.environ.get("BENCH_README") or Path(__file__).with_name("README.md"))


@contextmanager
def scratch_postgres(name: str) -> Iterator[Engine]:
    """A fresh, migrated database dropped afterwards."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    migrate(Settings(database_url=url))
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(fn: Callable[[], object], runs: int) -> float:
    return statistics.median(timed(fn) for _ in range(runs))


def machine(engine: Engine | None = None) -> str:
    facts = [
        f"{os.cpu_count()} cores",
        f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB",
        f"Python {platform.python_version()}",
    ]
    if engine is not None:
        with engine.connect() as conn:
            facts.append("PostgreSQL " + str(conn.execute(text("SHOW server_version")).scalar()))
    try:
        redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
        facts.append(redis.stdout.split()[2].replace("v=", "Redis "))
    except (OSError, IndexError):
        pass
    return ", ".join(facts)


def write_section(marker: str, body: str) -> None:
    """Replace the README section between ``<!-- marker -->`` and ``<!-- /marker -->``."""
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    current = README.read_text() if README.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in current:
        head, _, rest = current.partition(start)
        _, _, tail = rest.partition(end)
        current = head + block + tail
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    README.write_text(current)


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


class CountingWaker:
    """Counts wake-ups instead of publishing them: a benchmark measures database work."""

    def __init__(self) -> None:
        self.sent = 0

    def _count(self, *args: object, **kwargs: object) -> bool:
        self.sent += 1
        return True

    turn = deliver = reconcile = wrap_up = recompute = changed = webhook = webhooks = _count
