"""Pure functions: table-driven."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from agent.base import TurnContext
from agent.deps import TurnDeps
from agent.offline import OfflineAgent
from agent.tools import Toolbox
from channels.sms.channel import shape_sms
from cli.logs import effective_log_level
from conversations.addresses import normalize_phone
from conversations.errors import InvalidAddress
from conversations.outbox import backoff
from conversations.settings import Settings, local_secret
from conversations.transcript import MessageView
from conversations.types import utcnow


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (415) 555-0100", "+14155550100"),
        ("415.555.0100", "+14155550100"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_phone_numbers_normalize_to_e164(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["", "hello", "+1 12"])
def test_unparseable_numbers_are_named(raw: str) -> None:
    with pytest.raises(InvalidAddress, match="phone number"):
        normalize_phone(raw)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("**Bold** and `code`", "Bold and code"),
        ("a   b\t\tc", "a b c"),
        ("para\n\n\n\nnext", "para\n\nnext"),
    ],
)
def test_sms_shaping(text: str, expected: str) -> None:
    assert shape_sms(text) == expected


def test_sms_shaping_cuts_long_text_at_a_word_within_the_limit() -> None:
    shaped = shape_sms("word " * 500, limit=100)
    assert len(shaped) <= 100 and shaped.endswith("word…")


@pytest.mark.parametrize(("attempt", "seconds"), [(1, 2), (2, 4), (3, 8), (20, 3600)])
def test_backoff_is_exponential_and_capped(attempt: int, seconds: float) -> None:
    assert backoff(attempt, base=2) == timedelta(seconds=seconds)


def test_api_keys_parse_and_refuse_malformed_pairs(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, dormouse_api_keys="ops:k1, ci:k2").api_keys() == {
        "k1": "ops",
        "k2": "ci",
    }
    with pytest.raises(ValueError, match="name:key"):
        Settings(data_dir=tmp_path, dormouse_api_keys="nokey").api_keys()


def test_embedded_api_key_is_generated_once(tmp_path: Path) -> None:
    first = local_secret(tmp_path, "api-key")
    assert local_secret(tmp_path, "api-key") == first and len(first) >= 24
    assert (tmp_path / "api-key").stat().st_mode & 0o077 == 0


def context(*texts: str, turn: int = 1, count: int | None = None) -> TurnContext:
    now = utcnow()
    deps = TurnDeps(uuid.uuid4(), uuid.uuid4(), "acme", "sms", turn, idempotency_key="k")
    return TurnContext(
        deps=deps,
        customer_message_count=count if count is not None else len(texts),
        history=(),
        new_messages=tuple(
            MessageView(i, "inbound", "customer", "sms", t, now) for i, t in enumerate(texts)
        ),
    )


def toolbox(ctx: TurnContext) -> Toolbox:
    return Toolbox(ctx.deps)


@pytest.mark.parametrize(
    ("texts", "turn", "finish", "handoff", "fragment"),
    [
        (("hello",), 1, None, None, "Hi! You're talking to the acme assistant."),
        (("where is it",), 3, None, None, '"where is it"'),
        (("Goodbye!",), 2, "agent", None, "Goodbye"),
        (("ok BYE",), 2, "agent", None, "Goodbye"),
        (("can I talk to a human",), 2, None, "customer asked for a person", "a person"),
        (("agent please",), 2, None, "customer asked for a person", "a person"),
        (("byeee",), 2, None, None, '"byeee"'),
        (("",), 2, None, None, "You sent something without text"),  # an MMS of pictures
    ],
)
def test_offline_agent(
    texts: tuple[str, ...], turn: int, finish: str | None, handoff: str | None, fragment: str
) -> None:
    ctx = context(*texts, turn=turn)
    [reply] = OfflineAgent().run_turn(ctx, toolbox(ctx))
    assert fragment in reply
    assert ctx.deps.effects.finish_reason == finish
    assert ctx.deps.effects.handoff_reason == handoff
    assert ("Hi!" in reply) == (turn == 1)


def test_offline_agent_counts_the_conversation_not_the_turn() -> None:
    ctx = context("x", turn=4, count=7)
    [reply] = OfflineAgent().run_turn(ctx, toolbox(ctx))
    assert "7 messages from you" in reply


@pytest.mark.parametrize(
    ("level", "passed_on"),
    [(logging.WARNING, "WARNING"), (logging.INFO, "INFO"), (logging.NOTSET, "DEBUG")],
)
def test_the_log_level_reaches_celery_as_a_level_it_accepts(level: int, passed_on: str) -> None:
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        assert effective_log_level() == passed_on
    finally:
        root.setLevel(before)
