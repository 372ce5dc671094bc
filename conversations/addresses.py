"""Address normalization: one spelling per address, so one address is one customer."""

from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from conversations.channel_names import ADDRESS_KINDS
from conversations.errors import InvalidAddress

E164_EXAMPLE = "+14155550100"


def normalize_phone(raw: str, default_region: str = "US", *, must_be_valid: bool = True) -> str:
    """E.164 (``+14155550100``) or ``InvalidAddress`` naming what is wrong.

    What a person types (the API, the CLI, the console) must be a number that is assigned
    somewhere (``555-0100`` has no area code: "possible", not valid). What a carrier already
    delivered from (``must_be_valid=False``) only has to be possible: a range newer than the
    library's metadata must not lose a customer's message.
    """
    expected = f"give it in E.164 form, like {E164_EXAMPLE}"
    try:
        number = phonenumbers.parse(raw.strip(), default_region)
    except phonenumbers.NumberParseException as exc:
        reason = str(exc).split(") ", 1)[-1]  # drop the library's "(1) " error number
        raise InvalidAddress(f"{raw!r} is not a phone number ({reason}): {expected}") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidAddress(f"{raw!r} is not a possible phone number: {expected}")
    if must_be_valid and not phonenumbers.is_valid_number(number):
        raise InvalidAddress(f"{raw!r} is not a valid phone number: {expected}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """An email address as RFC 5321 lets it be sent to, lower-cased, or ``InvalidAddress``
    naming what is wrong: a dot-atom or quoted local part of at most 64 octets, a domain of
    labels with at least one dot, 254 octets in all; printable (UTF-8 allowed, RFC 6531),
    no CR, LF or other control character. The one rule for API input and inbound ``From``.

    email-validator checks the syntax only: no DNS, and the .test names of tests allowed.
    """
    address = raw.strip()
    try:
        validate_email(
            address,
            check_deliverability=False,
            allow_quoted_local=True,
            test_environment=True,
            strict=True,  # RFC 5321's 64 octets for the local part
        )
    except EmailNotValidError as exc:
        raise InvalidAddress(f"{address[:80]!r} is not an email address: {exc}") from None
    return address.lower()


MAX_CHAT_ID = 255


def normalize_chat_id(raw: str) -> str:
    """A chat user id as the platform spells it: trimmed, never case-folded (``U02AB`` and
    ``u02ab`` are two Slack users), without control characters, at most 255 characters."""
    user_id = raw.strip()
    if not user_id:
        raise InvalidAddress("a chat user id cannot be empty")
    if len(user_id) > MAX_CHAT_ID:
        raise InvalidAddress(f"a chat user id is at most {MAX_CHAT_ID} characters")
    if not user_id.isprintable():
        raise InvalidAddress(
            f"{user_id[:40]!r} has control or other unprintable characters: not a chat user id"
        )
    return user_id


def normalize_address(kind: str, address: str, region: str) -> str:
    """One spelling per address, or ``InvalidAddress`` naming what is wrong."""
    if kind == "phone":
        return normalize_phone(address, region)
    if kind == "email":
        return normalize_email(address)
    if kind == "chat":
        return normalize_chat_id(address)
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
