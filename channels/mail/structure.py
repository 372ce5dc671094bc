"""How many MIME parts a message has and how deeply they nest, counted before it is parsed.

The email package's parser with ``policy.default`` costs about 0.25 ms of CPU per part: a
1.6 MB mail of 40,000 empty parts took 26 s of an API process (three at once slowed every
other webhook sixfold). This scan reads the raw lines once, looking only at delimiter lines
and at the header block of each part it counts, and stops at the first part over the limit,
so what it costs is bounded by the size cap and the limit, not by what the sender chose.

It follows the parser's own reading (``email.feedparser``): a part starts at a line
``--boundary`` of any enclosing multipart (transport padding allowed) and a multipart ends at
``--boundary--`` (unless it directly follows a ``--boundary``, which the parser skips it
with); a ``message/*`` part's body is a message with its own header block, as is
an unlabelled part of a ``multipart/digest``. Depth counts the containers: a multipart or an
embedded message is one level below the one holding it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from conversations.errors import WebhookRejected

DEFAULT_MAX_PARTS = 100
DEFAULT_MAX_DEPTH = 10
_PADDING = b" \t\r"
# What the parser takes for a header line (email.feedparser.headerRE); a blank line too.
_HEADER_LINE = re.compile(rb"^(?:From |[\041-\071\073-\176]*:|[\t ]|$)")


@dataclass(frozen=True, slots=True)
class _Open:
    """A multipart being read: its delimiter, its depth, whether it is a digest."""

    delimiter: bytes
    depth: int
    digest: bool


def check_structure(
    raw: bytes, *, max_parts: int = DEFAULT_MAX_PARTS, max_depth: int = DEFAULT_MAX_DEPTH
) -> None:
    """``WebhookRejected`` 413 over ``max_parts`` parts, 400 nested deeper than ``max_depth``."""
    lines = raw.splitlines()  # at CRLF, LF and a bare CR, as the parser splits
    scan = _Scan(lines, max_parts=max_parts, max_depth=max_depth)
    index = scan.entity(0, depth=0, default="text/plain")
    while index < len(lines):
        index = scan.line(index)


class _Scan:
    def __init__(self, lines: list[bytes], *, max_parts: int, max_depth: int) -> None:
        self.lines = lines
        self.max_parts = max_parts
        self.max_depth = max_depth
        self.parts = 0
        self.open: list[_Open] = []
        self.status_blocks = False  # in a message/delivery-status body

    def line(self, index: int) -> int:
        """Read the line at ``index``; the index of the next line to read."""
        line = self.lines[index]
        if self.status_blocks and not line.rstrip(b"\r"):
            self._count_part()  # each block of a delivery-status is a part of its own
        found = self._delimiter(line)
        if found is None:
            return index + 1
        level, closing = found
        self.status_blocks = False
        if closing:
            del self.open[level:]  # this multipart ends, and any left open inside it
            return index + 1
        del self.open[level + 1 :]
        self._count_part()
        # Like the parser, delimiter lines of this multipart right after this one (its
        # closing one too) start no part: they are skipped.
        index += 1
        while index < len(self.lines) and self._delimiter(self.lines[index]) in (
            (level, False),
            (level, True),
        ):
            index += 1
        default = "message/rfc822" if self.open[level].digest else "text/plain"
        return self.entity(index, depth=self.open[level].depth, default=default)

    def _delimiter(self, line: bytes) -> tuple[int, bool] | None:
        """(level, closing) of the open multipart whose delimiter ``line`` is, or None.

        Outermost first: the parser ends a part at any enclosing delimiter before the part's
        own multipart reads the line, so one string serving two levels is the outer one's.
        """
        if not (self.open and line.startswith(b"--")):
            return None
        line = line.rstrip(_PADDING)
        for level, found in enumerate(self.open):
            if line == found.delimiter:
                return level, False
            if line == found.delimiter + b"--":
                return level, True
        return None

    def entity(self, index: int, *, depth: int, default: str) -> int:
        """Read the header block of an entity at ``depth`` (and of the messages a
        ``message/*`` entity holds); the index of the first line of its body."""
        while True:
            index, kind = self._header_block(index, default)
            if kind.get_content_type() == "message/delivery-status":
                self._deeper(depth)  # its blocks are parts one level below it
                self.status_blocks = True  # a part per block: the first even when empty
                self._count_part()
                return index
            if kind.get_content_maintype() == "message":
                depth = self._deeper(depth)
                self._count_part()  # the parser makes the embedded message a part too
                default = "text/plain"
                continue  # an embedded message: its own header block follows
            boundary = kind.get_boundary() if kind.get_content_maintype() == "multipart" else None
            if boundary:
                self.open.append(
                    _Open(
                        b"--" + _boundary_bytes(boundary),
                        self._deeper(depth),
                        kind.get_content_subtype() == "digest",
                    )
                )
            return index

    def _deeper(self, depth: int) -> int:
        if depth + 1 > self.max_depth:
            raise WebhookRejected(
                400, f"MIME parts nested deeper than {self.max_depth} levels (EMAIL_MAX_DEPTH)"
            )
        return depth + 1

    def _header_block(self, index: int, default: str) -> tuple[int, Message]:
        """The header lines from ``index`` up to the blank line, a line that is no header
        field (the body starts there) or a delimiter, as a Message holding only their
        Content-Type (or none, so that ``default`` applies)."""
        content_type: list[bytes] | None = None
        reading = False
        while index < len(self.lines):
            line = self.lines[index].rstrip(b"\r")
            if self._delimiter(line) is not None or not _HEADER_LINE.match(line):
                break
            index += 1
            if not line:
                break
            if line[:1] in (b" ", b"\t"):  # a folded continuation
                if reading and content_type is not None:
                    content_type.append(line)
                continue
            name, _, value = line.partition(b":")
            reading = name.strip().lower() == b"content-type"
            if reading and content_type is None:
                content_type = [value]
        kind = Message()
        if default != "text/plain":
            kind.set_default_type(default)
        if content_type is not None:
            # As the email package reads header bytes (ascii, surrogateescape): a UTF-8 reading
            # made U+0080 of C2 80, which its parameter parsing cannot encode (a 500).
            kind["Content-Type"] = b" ".join(content_type).decode("ascii", "surrogateescape")
        return index, kind

    def _count_part(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise WebhookRejected(413, f"more than {self.max_parts} MIME parts (EMAIL_MAX_PARTS)")


def _boundary_bytes(boundary: str) -> bytes:
    """The delimiter's bytes. ``get_boundary`` may turn escaped bytes into characters
    (C2 80 comes back as U+0080), which ascii cannot encode: then the UTF-8 spelling, which
    counts the delimiters as written (at least as many parts as the parser makes)."""
    try:
        return boundary.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return boundary.encode("utf-8", "surrogateescape")
