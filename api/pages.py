"""Cursor pages for the /v1 lists: the body stays a list, the next page is a header.

A list answers at most ``limit`` items, newest first; when more follow, ``X-Next-Cursor`` holds
an opaque cursor and ``Link: <…>; rel="next"`` the whole URL of the next page (RFC 8288, as
GitHub's API does). The cursor is the sort key of the last item answered, so a page never
repeats or skips an item that did not change while the client paged (keyset pagination: no
OFFSET, the same cost on page 1 and page 1,000).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import Request, Response

from conversations.errors import InvalidInput

T = TypeVar("T")
DESCRIPTION = "Opaque: the `X-Next-Cursor` of the previous page."
PAGE_HEADERS = {
    "X-Next-Cursor": {
        "description": "The cursor of the next page; absent on the last page.",
        "schema": {"type": "string"},
    },
    "Link": {
        "description": 'The next page\'s URL, rel="next"; absent on the last page.',
        "schema": {"type": "string"},
    },
}


def encode(key: Sequence[Any]) -> str:
    raw = json.dumps([str(part) for part in key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, parts: int) -> list[str]:
    """The sort key a cursor holds, or a 422 naming the cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        key = None
    if not isinstance(key, list) or len(key) != parts or not all(isinstance(p, str) for p in key):
        raise InvalidInput("cursor: not a cursor this list answered (take X-Next-Cursor as is)")
    return key


def decode_id(cursor: str) -> int:
    """The row id a cursor over an id-ordered list holds."""
    [row_id] = decode(cursor, 1)
    if not row_id.isdigit():
        raise InvalidInput("cursor: not a cursor this list answered (take X-Next-Cursor as is)")
    return int(row_id)


def page(items: list[T], limit: int, key: Any, request: Request, response: Response) -> list[T]:
    """The first ``limit`` of ``items`` (read as ``limit + 1``), with the next-page headers."""
    if len(items) <= limit:
        return items
    shown = items[:limit]
    cursor = encode(key(shown[-1]))
    response.headers["X-Next-Cursor"] = cursor
    response.headers["Link"] = f'<{request.url.include_query_params(cursor=cursor)}>; rel="next"'
    return shown
