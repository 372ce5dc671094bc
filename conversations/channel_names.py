"""Which channels exist, and what kind of address each one's customers write from.

The one list. API literals, CLI choices, identity kinds, timeout scopes and the shipped
timeouts derive from it; ``channels/registry.py`` gives each name its implementation and
refuses to start if the two disagree. Adding a channel is its module, one line here and one
in the registry.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

from conversations.errors import InvalidInput, UnknownChannel

# Channel name → the kind of identity its sender address is.
CHANNELS: dict[str, str] = {
    "sms": "phone",
    "email": "email",
    "chat": "chat",
}
CHANNEL_NAMES: tuple[str, ...] = tuple(CHANNELS)
ADDRESS_KINDS: tuple[str, ...] = tuple(dict.fromkeys(CHANNELS.values()))

# The longest text a person (operator, outbound API) may send on each channel: Twilio's
# limit for one SMS body; for mail, a bound on what a reply written by hand can be; for chat,
# a long answer in a chat window (a platform with a lower limit splits it on its side).
MAX_TEXT: dict[str, int] = {
    "sms": 1_600,
    "email": 100_000,
    "chat": 10_000,
}
LONGEST_TEXT = max(MAX_TEXT.values())  # what a request body may carry before the channel is known


def check_text(channel: str, text: str, field: str) -> None:
    """Refuse (422 naming ``field``) a text longer than ``channel`` carries."""
    limit = MAX_TEXT.get(channel, LONGEST_TEXT)
    if len(text) > limit:
        raise InvalidInput(
            f"{field}: {channel} messages are at most {limit:,} characters, this is {len(text):,}"
        )


def address_kind(channel: str) -> str:
    try:
        return CHANNELS[channel]
    except KeyError:
        known = ", ".join(CHANNEL_NAMES)
        raise UnknownChannel(f"unknown channel {channel!r}; known: {known}") from None


# pydantic answers a ValueError with a 422 naming the field, so the validators raise those.
def _known_channel(value: str) -> str:
    if value not in CHANNELS:
        raise ValueError(f"unknown channel {value!r}; known: {', '.join(CHANNEL_NAMES)}")
    return value


def _known_address_kind(value: str) -> str:
    if value not in ADDRESS_KINDS:
        raise ValueError(f"unknown address kind {value!r}; known: {', '.join(ADDRESS_KINDS)}")
    return value


# For request bodies and query parameters: validated, and an enum in the OpenAPI schema.
ChannelName = Annotated[
    str,
    AfterValidator(_known_channel),
    WithJsonSchema({"type": "string", "enum": list(CHANNEL_NAMES)}),
]
AddressKind = Annotated[
    str,
    AfterValidator(_known_address_kind),
    WithJsonSchema({"type": "string", "enum": list(ADDRESS_KINDS)}),
]
