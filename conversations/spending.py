"""Spending limits: how much a stranger can make Dormouse spend (model turns) and send (SMS).

Each limit is a ``LIMIT_*`` setting in the ``limits`` notation ("20/hour", "off"), counted
in Redis by the ``limits`` library (atomic Lua scripts, a sliding window counter: two keys
per limit and sender, no per-hit rows), so every API and worker process on every host shares
one count. What is over a limit is stored and held for an operator (``lifecycle.hold``),
never dropped and never answered.

The counting store failing must not stop the door (DESIGN §2.1: a webhook with the broker
down still accepts): a limit that cannot be counted lets the message through and says so
in the log, once a minute at most.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from conversations.metrics import LIMITED

if TYPE_CHECKING:
    from conversations.settings import Settings

log = logging.getLogger(__name__)

OFF = "off"
# Namespaced per database: two Dormouse installations (or test runs) on one Redis count apart.
KEY_PREFIX = "dormouse:limits"


@dataclass(frozen=True, slots=True)
class OverLimit:
    limit: str  # the metric label and the event's `limit`: conversations_per_address, …
    reason: str  # for operators: "over LIMIT_TURNS_PER_CONVERSATION (12/minute)"


def parse_limit(value: str, name: str) -> RateLimitItem | None:
    """A ``LIMIT_*`` value: "N/second|minute|hour|day" (``limits`` notation) or "off"."""
    value = value.strip().lower()
    if value == OFF:
        return None
    try:
        return parse(value)
    except ValueError:
        raise ValueError(
            f"{name}: {value!r} is not a limit; use N/minute, N/hour, N/day or off"
        ) from None


def storage_url(settings: Settings) -> str:
    """Where limits are counted: LIMIT_STORAGE_URL, else the broker's Redis (the embedded
    one in embedded mode), else this process's memory (a broker that is not Redis)."""
    if settings.limit_storage_url:
        return settings.limit_storage_url
    broker = settings.effective_broker_url
    if broker.startswith("redis+socket://"):
        return "redis+unix://" + broker.removeprefix("redis+socket://")
    if broker.startswith(("redis://", "rediss://")):
        return broker
    return "memory://"


_shared: dict[tuple[str, ...], SpendingLimits] = {}


def limits_for(settings: Settings) -> SpendingLimits:
    """One per process and configuration: its storage holds a connection pool."""
    key = (
        storage_url(settings),
        settings.limit_conversations_per_address,
        settings.limit_conversations_per_domain,
        settings.limit_turns_per_conversation,
        settings.limit_turns,
        settings.limit_sms_per_number,
    )
    found = _shared.get(key)
    if found is None:
        found = _shared[key] = SpendingLimits(settings)
    return found


class SpendingLimits:
    """The checks, each a ``hit``: it counts and answers in one atomic step."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._url = storage_url(settings)
        self._complained_at = 0.0
        if self._url == "memory://":
            log.warning(
                "the broker is not Redis: spending limits count per process (set LIMIT_STORAGE_URL)"
            )

    @cached_property
    def _limiter(self) -> SlidingWindowCounterRateLimiter:
        options: dict[str, float | str | bool] = {}
        if self._url.startswith(("redis", "rediss")):
            # A Redis that is down answers at once (refused); one that hangs must not stall
            # a webhook: a short bound, then the limit is let through (see the module).
            options = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
            options["key_prefix"] = KEY_PREFIX
        storage = storage_from_string(self._url, **options)
        assert isinstance(storage, Storage)  # the synchronous kind: no "async+" scheme
        return SlidingWindowCounterRateLimiter(storage)

    def new_conversation(self, kind: str, address: str) -> OverLimit | None:
        """A stranger opening a conversation: per address, and per mail domain."""
        settings = self._settings
        found = self._hit(
            settings.limit_conversations_per_address,
            "conversations_per_address",
            kind,
            address,
        )
        if found is None and kind == "email" and "@" in address:
            found = self._hit(
                settings.limit_conversations_per_domain,
                "conversations_per_domain",
                address.rpartition("@")[2],
            )
        return found

    def turn(self, conversation_id: str) -> OverLimit | None:
        """A turn about to run: per conversation (an auto-responder in a loop), and in all."""
        settings = self._settings
        return self._hit(
            settings.limit_turns_per_conversation, "turns_per_conversation", conversation_id
        ) or self._hit(settings.limit_turns, "turns", "all")

    def sms(self, number: str) -> OverLimit | None:
        """An SMS about to be sent to ``number`` (SMS pumping runs up a bill per message)."""
        return self._hit(self._settings.limit_sms_per_number, "sms_per_number", number)

    def _hit(self, value: str, limit: str, *identifiers: str) -> OverLimit | None:
        item = parse_limit(value, f"LIMIT_{limit.upper()}")
        if item is None:
            return None
        try:
            allowed = self._limiter.hit(item, limit, *identifiers)
        except Exception as exc:  # the store's own errors vary (redis, memcached, …)
            now = time.monotonic()
            if now - self._complained_at > 60:
                self._complained_at = now
                log.warning("spending limits cannot be counted (%s): letting through", exc)
            return None
        if allowed:
            return None
        LIMITED.labels(limit).inc()
        return OverLimit(limit, f"over LIMIT_{limit.upper()} ({value.strip()})")
