"""Short ids for people: a unique prefix of a UUID, as git takes a commit's first characters.

The CLI prints the first ``SHOWN`` hex digits of an id in its lists and takes any unique
prefix of at least ``MINIMUM`` (dashes optional) wherever it takes an id. The HTTP API keeps
full UUIDs: a program has no trouble copying 36 characters, and a prefix unique today may not
be tomorrow.
"""

from __future__ import annotations

import string
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conversations.errors import DormouseError

MINIMUM = 6
SHOWN = 8
# How many of the matches an ambiguity error names.
NAMED = 3


class ShortIdError(DormouseError):
    """A prefix that names no row, several, or is not a prefix of a UUID at all."""


def short(value: uuid.UUID) -> str:
    """What lists print: the first ``SHOWN`` hex digits."""
    return value.hex[:SHOWN]


def resolve(session: Session, model: Any, prefix: str, noun: str) -> uuid.UUID:
    """The id of the one ``model`` row whose id starts with ``prefix``.

    ``model`` is a mapped class with a ``Uuid`` primary key ``id``; ``noun`` names it in
    errors ("conversation"). A full UUID is a prefix like any other.
    """
    digits = prefix.strip().replace("-", "").lower()
    if not digits or any(c not in string.hexdigits for c in digits) or len(digits) > 32:
        raise ShortIdError(f"{prefix!r} is not a {noun} id (hex digits, dashes optional)")
    if len(digits) < MINIMUM:
        raise ShortIdError(f"{prefix!r} is too short: give at least {MINIMUM} hex digits")
    # The ids starting with a prefix are one range of the ordering: the prefix padded with 0s
    # up to the prefix padded with fs. PostgreSQL's uuid sorts bytewise and SQLite's CHAR(32)
    # holds lowercase hex, so the same range holds on both, and it uses the primary key's
    # index, where a LIKE on the id cast to text would read every row.
    low = uuid.UUID(digits.ljust(32, "0"))
    high = uuid.UUID(digits.ljust(32, "f"))
    in_range = (model.id >= low) & (model.id <= high)
    found: list[uuid.UUID] = list(
        session.scalars(select(model.id).where(in_range).order_by(model.id).limit(NAMED + 1))
    )
    if len(found) == 1:
        return found[0]
    shown = digits if len(digits) < 32 else str(uuid.UUID(digits))
    if not found:
        raise ShortIdError(f"no {noun} starts with {shown}")
    count = session.scalar(select(func.count()).select_from(model).where(in_range))
    # A couple of digits past the prefix: enough to tell the matches apart, most often.
    width = max(SHOWN, len(digits) + 2)
    named = ", ".join(f"{value.hex[:width]}…" for value in found[:NAMED])
    more = ", …" if (count or 0) > NAMED else ""
    raise ShortIdError(f"{shown} matches {count} {noun}s: {named}{more}; give more characters")
