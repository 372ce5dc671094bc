"""Address normalization: one spelling per address, so one address is one customer."""

from __future__ import annotations

import phonenumbers

from conversations.channel_names import ADDRESS_KINDS
from conversations.errors import InvalidAddress


def normalize_phone(raw: str, default_region: str = "US") -> str:
    """E.164 (``+14155550100``) or ``InvalidAddress`` naming what is wrong."""
    try:
        number = phonenumbers.parse(raw.strip(), default_region)
    except phonenumbers.NumberParseException as exc:
        reason = str(exc).split(") ", 1)[-1]  # drop the library's "(1) " error number
        raise InvalidAddress(f"{raw!r} is not a phone number: {reason}") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidAddress(f"{raw!r} is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_address(kind: str, address: str, region: str) -> str:
    """One spelling per address, or ``InvalidAddress`` naming what is wrong."""
    if kind == "phone":
        return normalize_phone(address, region)
    if kind == "email":
        address = address.strip().lower()
        local, at, domain = address.partition("@")
        if not at or not local or "." not in domain or " " in address:
            raise InvalidAddress(f"{address!r} is not an email address")
        return address
    raise InvalidAddress(f"unknown address kind {kind!r}; known: {', '.join(ADDRESS_KINDS)}")


def normalize_any(address: str, region: str) -> str:
    """An address of unknown kind, as an operator types it into a search: an email if it has
    an @, else a phone number in any spelling if it is one, else as typed (trimmed)."""
    if "@" in address:
        return address.strip().lower()
    try:
        return normalize_phone(address, region)
    except InvalidAddress:
        return address.strip()
