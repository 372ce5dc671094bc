"""Reading headers of hostile mail, and how long a References chain we keep."""

from __future__ import annotations

from email.message import Message

# RFC 5322 §3.6.4 lets a long References chain lose its middle: we keep the newest ids, both
# to thread an inbound mail and to write our replies' References.
MAX_REFERENCES = 20


def header(message: Message, name: str) -> str:
    """The header as text, or "" when absent or too mangled to read."""
    try:
        value = message.get(name)
        return str(value) if value is not None else ""
    except Exception:  # policy.default raises several kinds on malformed values
        return ""


def every(message: Message, name: str) -> list[str]:
    """Every occurrence of the header as text, in order; a copy too mangled to decode is
    kept as sent, so it still counts.

    A rule that reads only the first (``message.get``) is walked around by a mail that
    carries the header twice: ``Precedence: normal`` and then ``Precedence: bulk``.
    """
    wanted = name.lower()
    found: list[str] = []
    for key, raw in message.raw_items():
        if key.lower() != wanted:
            continue
        try:
            found.append(str(message.policy.header_fetch_parse(key, raw)))
        except Exception:  # policy.default raises several kinds on malformed values
            found.append(str(raw))
    return found
