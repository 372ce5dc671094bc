"""The MIME scan that runs before the parser never counts fewer parts, or fewer levels, than
the parser then builds: whatever the structure, a mail over the limits is refused unparsed."""

from __future__ import annotations

from email import policy
from email.message import Message
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.mail.structure import check_structure
from conversations.errors import WebhookRejected

# Few boundaries, so that nested multiparts reuse each other's; lines that look like
# delimiters or headers in bodies; parts without a blank line after their headers.
BOUNDARIES = st.sampled_from([b"a", b"b", b"=_x", b"a--"])
BODY_LINES = st.lists(
    st.sampled_from([b"text", b"--a", b"--b--", b"", b"Content-Type: text/plain", b" folded"]),
    max_size=3,
)


def leaf() -> st.SearchStrategy[list[bytes]]:
    kinds = st.sampled_from([None, b"text/plain", b"text/html", b"message/delivery-status"])
    return st.builds(
        lambda kind, blank, body: (
            ([b"Content-Type: " + kind] if kind else []) + ([b""] if blank else []) + body
        ),
        kinds,
        st.booleans(),
        BODY_LINES,
    )


def container(children: st.SearchStrategy[list[bytes]]) -> st.SearchStrategy[list[bytes]]:
    def multipart(subtype: bytes, boundary: bytes, parts: list[list[bytes]], closed: bool):
        lines = [b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"', b""]
        for part in parts:
            lines += [b"--" + boundary, *part]
        return lines + ([b"--" + boundary + b"--"] if closed else [])

    def embedded(inner: list[bytes]) -> list[bytes]:
        return [b"Content-Type: message/rfc822", b"", b"Subject: inner", *inner]

    return st.one_of(
        st.builds(
            multipart,
            st.sampled_from([b"mixed", b"alternative", b"digest", b"report"]),
            BOUNDARIES,
            st.lists(children, max_size=4),
            st.booleans(),
        ),
        st.builds(embedded, children),
    )


ENTITIES = st.recursive(leaf(), container, max_leaves=25)


def parsed_shape(message: Message) -> tuple[int, int]:
    """(parts, depth) of what the parser built."""

    def depth(m: Message) -> int:
        children = m.get_payload() if m.is_multipart() else []
        assert isinstance(children, list)
        return 1 + max((depth(c) for c in children), default=0) if m.is_multipart() else 0

    return sum(1 for _ in message.walk()) - 1, depth(message)


@settings(max_examples=500, deadline=None)
@given(entity=ENTITIES, ending=st.sampled_from([b"\r\n", b"\n", b"\r"]))
def test_the_scan_never_counts_less_than_the_parser_builds(
    entity: list[bytes], ending: bytes
) -> None:
    raw = ending.join([b"From: ada@example.com", *entity, b""])
    parts, depth = parsed_shape(BytesParser(policy=policy.default).parsebytes(raw))
    check_structure(raw, max_parts=10_000, max_depth=10_000)  # never refuses what is in bounds
    if parts:
        with pytest.raises(WebhookRejected) as refused:
            check_structure(raw, max_parts=parts - 1, max_depth=10_000)
        assert refused.value.status == 413
    if depth:
        with pytest.raises(WebhookRejected) as refused:
            check_structure(raw, max_parts=10_000, max_depth=depth - 1)
        assert refused.value.status == 400
