"""Inactivity timeouts as data: parse durations, pick the effective policy, compute deadlines.

Pure functions; the store functions that read and write policies are in ``timeout_store``.
Most specific wins: conversation override → (service, channel) → channel → service →
global → the shipped default for the channel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

NEVER = "never"

_HUMAN = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class Scope:
    service: str = ""
    channel: str = ""

    def describe(self) -> str:
        if self.service and self.channel:
            return f"service {self.service!r} on {self.channel}"
        if self.service:
            return f"service {self.service!r}"
        if self.channel:
            return f"channel {self.channel}"
        return "global default"


@dataclass(frozen=True, slots=True)
class Policy:
    inactivity: timedelta | None  # None: never closes for inactivity
    nudge_before: timedelta | None = None
    nudge_message: str | None = None
    closing_message: str | None = None


@dataclass(frozen=True, slots=True)
class Override:
    """A conversation's own inactivity timeout; ``inactivity=None`` means never."""

    inactivity: timedelta | None


def parse_duration(value: str | int | float | None) -> timedelta | None:
    """``90s``, ``30m``, ``24h``, ``7d``, ISO 8601 (``PT2H``), seconds, or never/None.

    Raises ``ValueError`` naming what is wrong; zero and negative durations are refused.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a duration cannot be true/false")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        if text.lower() == NEVER:
            return None
        human, iso = _HUMAN.match(text), _ISO.match(text)
        if human:
            seconds = float(human.group(1)) * _UNIT_SECONDS[(human.group(2) or "s").lower()]
        elif iso and any(iso.groupdict().values()):
            g = {k: float(v) if v else 0.0 for k, v in iso.groupdict().items()}
            seconds = g["w"] * 604800 + g["d"] * 86400 + g["h"] * 3600 + g["m"] * 60 + g["s"]
        else:
            raise ValueError(f"{value!r} is not a duration (try 90s, 30m, 24h, 7d, PT2H or never)")
    if seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be positive")
    if seconds > 365 * 86400:
        raise ValueError(f"{value!r}: longer than a year; use never instead")
    return timedelta(seconds=seconds)


def parse_schedule(text: str) -> list[float]:
    """``0,5s,5m,…``: the delay before each attempt, in seconds (the first is usually 0)."""
    delays = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part in ("0", "0s"):
            delays.append(0.0)
            continue
        delay = parse_duration(part)
        if delay is None:
            raise ValueError(f"{part!r}: a retry delay cannot be never")
        delays.append(delay.total_seconds())
    if not delays:
        raise ValueError("the retry schedule needs at least one attempt")
    return delays


def format_duration(value: timedelta | None) -> str:
    if value is None:
        return NEVER
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def governing_scope(
    policies: Mapping[Scope, Policy], *, service: str, channel: str
) -> Scope | None:
    """The most specific scope with a policy for (service, channel); None: the defaults."""
    for scope in (Scope(service, channel), Scope("", channel), Scope(service, ""), Scope()):
        if scope in policies:
            return scope
    return None


def effective_policy(
    policies: Mapping[Scope, Policy],
    *,
    service: str,
    channel: str,
    defaults: Mapping[str, Policy],
    override: Override | None = None,
) -> Policy:
    scope = governing_scope(policies, service=service, channel=channel)
    policy = policies[scope] if scope is not None else defaults.get(channel) or defaults[""]
    if override is not None:
        policy = replace(policy, inactivity=override.inactivity)
    return policy


def deadlines(
    policy: Policy, last_activity: datetime, *, nudged_at: datetime | None = None
) -> tuple[datetime | None, datetime | None]:
    """(expires_at, nudge_due_at) for a conversation last active at ``last_activity``.

    A nudge is a promise of time to answer it: a conversation nudged at ``nudged_at`` closes
    no sooner than ``nudge_before`` after it, however overdue it was, and is not nudged again.
    """
    if policy.inactivity is None:
        return None, None
    expires = last_activity + policy.inactivity
    nudges = bool(policy.nudge_before and policy.nudge_message)
    if nudged_at is not None:
        if nudges and policy.nudge_before:
            expires = max(expires, nudged_at + policy.nudge_before)
        return expires, None
    nudge = None
    if nudges and policy.nudge_before and policy.nudge_before < policy.inactivity:
        nudge = expires - policy.nudge_before
    return expires, nudge
