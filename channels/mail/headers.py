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
