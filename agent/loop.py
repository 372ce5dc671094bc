"""One event loop per process, in its own thread, that every agent run of the process shares.

A turn spends seconds waiting on the model and almost no CPU. Worker threads do a turn's
database work themselves and hand the agent run to this loop, so hundreds of runs wait on
their models at once on one thread, sharing the provider's HTTP client and its connection
pool (an asyncio client must stay on the loop it was made on: one loop per worker thread, as
``run_sync`` would make, would break that). The loop is started on first use, after a
prefork pool has forked, so a child never inherits its parent's thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from conversations import log_context

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid = 0


def agent_loop() -> asyncio.AbstractEventLoop:
    """This process's agent loop, started (in a daemon thread) on first use."""
    global _loop, _pid
    with _lock:
        if _loop is None or _pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="dormouse-agent-loop", daemon=True
            ).start()
            _loop, _pid = loop, os.getpid()
        return _loop


def run_on_agent_loop(coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
    """Run ``coro`` on the agent loop and wait for it, at most ``timeout`` seconds.

    Past the timeout the run is cancelled on the loop (the model call with it) and
    ``TimeoutError`` raised here, so a worker thread never waits longer than its budget.
    """
    future = asyncio.run_coroutine_threadsafe(_carrying(log_context.current(), coro), agent_loop())
    try:
        return future.result(timeout)
    except FutureTimeout:
        future.cancel()
        raise TimeoutError(f"the agent run passed its deadline of {timeout:g}s") from None


async def _carrying(ids: dict[str, str], coro: Coroutine[Any, Any, T]) -> T:
    # A task copies the loop thread's context, not the caller's: the lines a run logs (a
    # tool's exception) would lose their conversation_id. Set in the task's own copy.
    log_context.restore(ids)
    return await coro
