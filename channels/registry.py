"""Channel name → its implementation and its webhook router.

The names themselves are ``conversations/channel_names.py``; the API mounts every router
listed here and nothing else, so adding a channel is its module, one entry here and one name
there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.routing import APIRoute

from channels.base import Channel
from channels.chat import webhooks as chat_webhooks
from channels.chat.channel import ChatChannel
from channels.mail import webhooks as email_webhooks
from channels.mail.channel import EmailChannel
from channels.sms import webhooks as sms_webhooks
from channels.sms.channel import SmsChannel
from conversations.channel_names import CHANNEL_NAMES
from conversations.errors import ConfigurationError, UnknownChannel
from conversations.settings import Settings


@dataclass(frozen=True)
class Registered:
    factory: Callable[[Settings], Channel]
    router: APIRouter  # its inbound webhooks (and provider callbacks)


CHANNELS: dict[str, Registered] = {
    "sms": Registered(SmsChannel, sms_webhooks.router),
    "email": Registered(EmailChannel, email_webhooks.router),
    "chat": Registered(ChatChannel, chat_webhooks.router),
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
        registered = CHANNELS[name]
    except KeyError:
        raise UnknownChannel(f"unknown channel {name!r}; known: {', '.join(CHANNELS)}") from None
    channel = _instances[key] = registered.factory(settings)
    return channel


def webhook_routers() -> list[APIRouter]:
    return [registered.router for registered in CHANNELS.values()]


def webhook_channels() -> dict[str, str]:
    """Each webhook path → the channel whose router serves it (metrics label webhooks so)."""
    return {
        route.path: name
        for name, registered in CHANNELS.items()
        for route in registered.router.routes
        if isinstance(route, APIRoute)
    }
