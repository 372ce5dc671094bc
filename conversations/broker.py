"""Celery configuration shared by the workers and by every process that publishes wake-ups.

At-least-once, with the reason for each setting (see RELIABILITY.md for the sources).
"""

from __future__ import annotations

from typing import Any

import redis

from conversations.settings import Settings

# Set by `dormouse up` for each worker and the beat, which touch the file once ready: `up`
# prints its banner (key and links) after their start-up lines, not buried under them.
READY_FILE_ENV = "DORMOUSE_READY_FILE"


def celery_config(settings: Settings) -> dict[str, Any]:
    visibility = settings.broker_visibility_timeout
    transport = {
        # Redis has no real acks: an unacked message returns only after this. Every time
        # limit below stays far under it, and no ETA/countdown carries correctness.
        "visibility_timeout": visibility,
        # A publisher must not hang on a dead broker (the webhook already committed).
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }
    return {
        "broker_url": settings.effective_broker_url,
        "broker_transport_options": transport,
        "result_backend": None,
        "task_ignore_result": True,
        "visibility_timeout": visibility,
        # Ack after the task ran, so a worker that dies mid-turn leaves the message to redeliver.
        "task_acks_late": True,
        # ... including a child killed by a signal or OOM. A poison message would loop forever
        # here (the broker keeps no delivery count), so the count lives on the conversation
        # row and a turn claimed max_turn_attempts times is quarantined.
        "task_reject_on_worker_lost": True,
        # One message at a time per process: a prefetched turn would wait behind a slow one.
        "worker_prefetch_multiplier": 1,
        # Well below the lease (so a turn ends before another may claim it) and the visibility
        # timeout (so Redis does not redeliver a turn that is still running).
        "task_time_limit": settings.turn_time_limit,
        # The soft limit raises inside the turn, which then releases its lease cleanly.
        "task_soft_time_limit": settings.turn_time_limit - min(10.0, settings.turn_time_limit / 5),
        # On connection loss late-ack messages are redelivered, possibly in parallel: stop
        # ours. The lease and its fencing token make a parallel copy harmless anyway.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Remote control (celery inspect/control) is a pub/sub subscription on Redis. When the
        # broker restarts while a late-ack task is unacknowledged and that subscription is the
        # first to notice, celery 5.7's reconnect closes an already-collected connection and
        # dies on an AttributeError (kombu's restore_unacked with no client). Nothing in
        # Dormouse uses remote control; the broker-restart fault test guards this.
        "worker_enable_remote_control": False,
        "worker_hijack_root_logger": False,
        # A prefork child must say it is up within this, or it is killed and the worker dies
        # with WorkerLostError('Could not start worker processes'). Celery's 4 s was missed
        # by one restart in seven at 40 webhooks/s on two cores: a child forks in
        # milliseconds but waits for CPU behind the load it is restarted into.
        "worker_proc_alive_timeout": 30.0,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
    }


def ping_broker(url: str, timeout: float = 2.0) -> None:
    """Raise if the broker does not answer. Redis URLs only (kombu's own for the rest)."""
    if url.startswith(("redis://", "rediss://", "redis+socket://", "unix://")):
        client = redis.Redis.from_url(
            url.replace("redis+socket://", "unix://", 1),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        try:
            client.ping()
        finally:
            client.close()
        return
    from kombu.connection import Connection

    with Connection(url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1)
