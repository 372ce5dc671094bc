"""Channel name → channel. Adding a channel touches its module and this table only."""

from __future__ import annotations

from collections.abc import Callable

from channels.base import Channel
from channels.mail.channel import EmailChannel
from channels.sms import SmsChannel
from conversations.errors import UnknownChannel
from conversations.settings import Settings

CHANNELS: dict[str, Callable[[Settings], Channel]] = {
    "sms": SmsChannel,
    "email": EmailChannel,
}


# One instance per (channel, settings) in a process: a channel holds its provider client and
# its HTTP connection pool, which every delivery would otherwise rebuild.
_instances: dict[tuple[str, int], Channel] = {}


def get_channel(name: str, settings: Settings) -> Channel:
    key = (name, id(settings))
    found = _instances.get(key)
    if found is not None and getattr(found, "settings", None) is settings:
        return found
    try:
        factory = CHANNELS[name]
    except KeyError:
        raise UnknownChannel(f"unknown channel {name!r}; known: {', '.join(CHANNELS)}") from None
    channel = _instances[key] = factory(settings)
    return channel
