"""The effective policy and durations: pure functions, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conversations.timeouts import (
    Override,
    Policy,
    Scope,
    deadlines,
    effective_policy,
    format_duration,
    parse_duration,
)

H = timedelta(hours=1)
DEFAULTS = {
    "sms": Policy(24 * H),
    "email": Policy(72 * H),
    "chat": Policy(timedelta(minutes=30)),
    "": Policy(24 * H),
}
POLICIES = {
    Scope(): Policy(10 * H),
    Scope(service="acme"): Policy(5 * H),
    Scope(channel="sms"): Policy(3 * H),
    Scope("acme", "sms"): Policy(1 * H),
    Scope(channel="email"): Policy(None),
}


@pytest.mark.parametrize(
    ("policies", "service", "channel", "override", "expected"),
    [
        ({}, "x", "sms", None, 24 * H),  # shipped default for the channel
        ({}, "x", "chat", None, timedelta(minutes=30)),
        ({}, "x", "whatsapp", None, 24 * H),  # shipped default for any other channel
        ({Scope(): Policy(10 * H)}, "x", "chat", None, 10 * H),  # global beats shipped
        (POLICIES, "other", "chat", None, 10 * H),  # global
        (POLICIES, "acme", "chat", None, 5 * H),  # service beats global
        (POLICIES, "other", "sms", None, 3 * H),  # channel beats global
        (POLICIES, "beta", "sms", None, 3 * H),
        (POLICIES, "acme", "sms", None, 1 * H),  # service+channel beats all
        (POLICIES, "acme", "email", None, None),  # channel "never" beats the service's 5h
        (POLICIES, "acme", "sms", Override(2 * H), 2 * H),  # conversation override wins
        (POLICIES, "acme", "sms", Override(None), None),  # override to never
    ],
)
def test_most_specific_scope_wins(policies, service, channel, override, expected) -> None:  # type: ignore[no-untyped-def]
    policy = effective_policy(
        policies, service=service, channel=channel, defaults=DEFAULTS, override=override
    )
    assert policy.inactivity == expected


def test_override_keeps_the_policy_messages() -> None:
    policies = {Scope(): Policy(H, timedelta(minutes=10), "still there?", "bye")}
    p = effective_policy(
        policies, service="s", channel="sms", defaults=DEFAULTS, override=Override(2 * H)
    )
    assert (p.inactivity, p.nudge_message, p.closing_message) == (2 * H, "still there?", "bye")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("24h", 24 * H),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("PT2H", 2 * H),
        ("P1DT30M", timedelta(days=1, minutes=30)),
        ("PT0.5S", timedelta(seconds=0.5)),
        (3600, H),
        ("3600", H),
        ("never", None),
        ("NEVER", None),
        (None, None),
    ],
)
def test_durations_parse(text: str | int | None, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "positive"),
        (0, "positive"),
        ("-5m", "positive"),
        (-1, "positive"),
        ("soon", "not a duration"),
        ("P", "not a duration"),
        ("", "not a duration"),
        ("400d", "longer than a year"),
        (True, "true/false"),
    ],
)
def test_nonsense_durations_are_refused_with_a_reason(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "never"),
        (24 * H, "1d"),
        (2 * H, "2h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=45), "45s"),
    ],
)
def test_durations_format(value: timedelta | None, text: str) -> None:
    assert format_duration(value) == text


def test_deadlines() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert deadlines(Policy(None), t) == (None, None)
    assert deadlines(Policy(2 * H), t) == (t + 2 * H, None)
    assert deadlines(Policy(2 * H, H, "still there?"), t) == (t + 2 * H, t + H)
    # A nudge without a message, or not before the deadline, is no nudge.
    assert deadlines(Policy(2 * H, H, None), t) == (t + 2 * H, None)
    assert deadlines(Policy(2 * H, 3 * H, "x"), t) == (t + 2 * H, None)
