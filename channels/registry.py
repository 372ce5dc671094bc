"""Channel name → its implementation (the names themselves are conversations/channel_names.py)."""

from __future__ import annotations

from collections.abc import Callable

from channels.base import Channel
from channels.mail.channel import EmailChannel
from channels.sms import SmsChannel
from conversations.channel_names import CHANNEL_NAMES
from conversations.errors import ConfigurationError, UnknownChannel
from conversations.settings import Settings

CHANNELS: dict[str, Callable[[Settings], Channel]] = {
    "sms": SmsChannel,
    "email": EmailChannel,
}

# Fail at start-up, not at the first message, if the list of channels and the registry part.
if set(CHANNELS) != set(CHANNEL_NAMES):
    raise ConfigurationError(
        f"channels/registry.py has {sorted(CHANNELS)}, conversations/channel_names.py "
        f"{sorted(CHANNEL_NAMES)}: a channel needs both"
    )


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
