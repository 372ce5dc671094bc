"""Which channels exist, and the facts of each that the rest of Dormouse may know (``FACTS``):
the kind of address its customers write from, its text limit, its label, how a reply reads.

The one list. API literals, CLI choices, identity kinds, timeout scopes and the shipped
timeouts derive from it; ``channels/registry.py`` gives each name its implementation and
refuses to start if the two disagree. Adding a channel is its module, one line here and one
in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

from conversations.errors import InvalidInput, UnknownChannel


@dataclass(frozen=True, slots=True)
class ChannelFacts:
    """What everything outside a channel's package may know of it."""

    address_kind: str  # the kind of identity its sender address is
    # The longest text a person (operator, outbound API) may send on it.
    max_text: int
    label: str  # as people read its name: "SMS", "email"
    # How a reply should read there, told to the agent's model (the channel shapes it again).
    style: str | None = None

    @property
    def title(self) -> str:
        """The label at the start of a line or an option: "SMS", "Email"."""
        return self.label[:1].upper() + self.label[1:]


FACTS: dict[str, ChannelFacts] = {
    # Twilio's limit for one SMS body.
    "sms": ChannelFacts(
        "phone",
        1_600,
        "SMS",
        "You are replying by SMS: keep it short, plain text, no markup.",
    ),
    # A bound on what a reply written by hand can be.
    "email": ChannelFacts(
        "email",
        100_000,
        "email",
        "You are replying by email: short paragraphs separated by blank lines, plain "
        "text, no subject line; it may be longer than a text message.",
    ),
    # A long answer in a chat window (a platform with a lower limit splits it on its side).
    "chat": ChannelFacts("chat", 10_000, "chat"),
}

# Channel name → the kind of identity its sender address is.
CHANNELS: dict[str, str] = {name: facts.address_kind for name, facts in FACTS.items()}
CHANNEL_NAMES: tuple[str, ...] = tuple(FACTS)
ADDRESS_KINDS: tuple[str, ...] = tuple(dict.fromkeys(CHANNELS.values()))
MAX_TEXT: dict[str, int] = {name: facts.max_text for name, facts in FACTS.items()}
LONGEST_TEXT = max(MAX_TEXT.values())  # what a request body may carry before the channel is known


def check_text(channel: str, text: str, field: str) -> None:
    """Refuse (422 naming ``field``) a text longer than ``channel`` carries."""
    limit = MAX_TEXT.get(channel, LONGEST_TEXT)
    if len(text) > limit:
        raise InvalidInput(
            f"{field}: {channel} messages are at most {limit:,} characters, this is {len(text):,}"
        )


def label(channel: str) -> str:
    """As people read the channel's name ("SMS", "email"); an unknown one as it is stored."""
    facts = FACTS.get(channel)
    return facts.label if facts is not None else channel


def title(channel: str) -> str:
    facts = FACTS.get(channel)
    return facts.title if facts is not None else channel.capitalize()


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
