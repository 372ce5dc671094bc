"""Channel name → channel. Adding a channel touches its module and this table only."""

from __future__ import annotations

from collections.abc import Callable

from channels.base import Channel
from channels.sms import SmsChannel
from conversations.settings import Settings

CHANNELS: dict[str, Callable[[Settings], Channel]] = {
    "sms": SmsChannel,
}


class UnknownChannel(LookupError):
    pass


def get_channel(name: str, settings: Settings) -> Channel:
    try:
        factory = CHANNELS[name]
    except KeyError:
        raise UnknownChannel(f"unknown channel {name!r}; known: {', '.join(CHANNELS)}") from None
    return factory(settings)
