"""Address normalization: one spelling per address, so one address is one customer."""

from __future__ import annotations

import phonenumbers

from conversations.errors import InvalidAddress


def normalize_phone(raw: str, default_region: str = "US") -> str:
    """E.164 (``+14155550100``) or ``InvalidAddress`` naming what is wrong."""
    try:
        number = phonenumbers.parse(raw.strip(), default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress(f"{raw!r} is not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidAddress(f"{raw!r} is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
