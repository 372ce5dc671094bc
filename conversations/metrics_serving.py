"""Where a process's metrics are kept and who serves them.

One design for both deployment shapes. Every process that does work counts into
prometheus-client's multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``): a prefork worker's
children are separate processes, and without the directory what they count would be seen by
no one. Then:

- ``dormouse up`` (one machine) gives all its processes one directory, ``$DATA_DIR/metrics``,
  emptied when it starts, and the API's ``GET /metrics`` sums every file in it: one scrape
  shows the API, both workers (their pool children too) and beat.
- On several machines (compose, one process per container) each ``dormouse api|worker|beat``
  has a directory of its own; the API serves its own at ``/metrics`` and a worker or beat
  serves its own on ``METRICS_PORT``, which Prometheus scrapes per container.

The environment variable must be set before prometheus-client is first imported (it chooses
its value class then), so the command line sets it first thing (``cli/root.py``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def use_fresh_dir(path: Path) -> None:
    """Count into ``path`` from now on, emptied first: files of processes that are gone would
    otherwise be summed into every scrape (and counters restart from 0 anyway when their
    process does, which Prometheus's rate() handles)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)


def private_dir(data_dir: Path, role: str) -> Path:
    """A process's own directory when nothing chose one: ``$DATA_DIR/metrics/<role>-<pid>``.

    Per pid, so two workers started by hand on one machine never empty each other's; the
    directories of processes no longer running are removed as the next one starts.
    """
    parent = data_dir / "metrics"
    if parent.is_dir():
        for old in parent.iterdir():
            pid = old.name.rpartition("-")[2]
            if old.is_dir() and pid.isdigit() and not _running(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
    return parent / f"{role}-{os.getpid()}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ScrapeSources:
    """What one scrape shows: this machine's counted work, then the given collectors.

    Duck-types prometheus-client's registry (``collect``), so that collectors made per app
    (each test makes one) are never registered into the process-wide one twice.
    """

    def __init__(self, extra: Iterable[Collector] = ()) -> None:
        self.extra = list(extra)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client import REGISTRY
        from prometheus_client.multiprocess import MultiProcessCollector
        from prometheus_client.registry import CollectorRegistry

        directory = multiprocess_dir()
        if directory is not None:
            # Every process's files, this one's included; the default registry would show
            # only this process (and, in multiprocess mode, nothing useful).
            counted = CollectorRegistry()
            MultiProcessCollector(counted, path=str(directory))
            yield from counted.collect()
        else:
            yield from REGISTRY.collect()
        for collector in self.extra:
            yield from collector.collect()


def serve_port(port: int, host: str = "0.0.0.0") -> None:
    """Serve this process's (and its children's) metrics on ``port`` from a daemon thread."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=ScrapeSources())
