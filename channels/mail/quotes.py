"""Where the quoted history starts in a reply, and whether a message is a forward.

The quote headers come from two maintained libraries: mail-parser-reply (the "On … wrote:"
and "From: … Sent:" headers of the languages it knows) and quotequail (its reply and
"Original Message" patterns, wrapped over two lines). Neither knows every language a
customer writes in, so three small rules of ours fill the gaps:

- an *attribution line*: up to three wrapped lines ending in a colon that name a sender's
  address or a date and time ("tir. 18. apr. 2017 kl. 13:09 skrev Ann <ann@example.com>:",
  "2013.02.08. 7:31 keltezéssel, "Eszter" írta:"), which is how nearly every client in
  every language introduces a quote, whatever its verb;
- the localized "Original Message" dividers the libraries lack;
- forward dividers, so that a forward keeps what was forwarded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import quotequail
from mailparser_reply.parser import EmailMessage

# The languages whose headers mail-parser-reply recognizes (all it has but the "david"
# client): a header in another language than the customer's is common in forwarded threads.
REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs", "ja", "zh", "ko"]
_LIBRARY_HEADERS = EmailMessage(text="", languages=list(REPLY_LANGUAGES)).HEADER_REGEX
MAX_WRAPPED_LINES = 3
QUOTEQUAIL_LINES = 1000
MAX_ATTRIBUTION = 300  # characters: an attribution names a date and a sender, not a paragraph

_HEADER_FIELD = re.compile(r"^\s*(?:>\s*)*\*?[^\W\d][\w .'-]{0,30}\s?:\S?")
_QUOTED = re.compile(r"^\s*>")
# A line of dashes or underscores only: Outlook's divider above the header block it quotes.
_DIVIDER_LINE = re.compile(r"^\s*(?:-{3,}|_{3,})\s*$")
_ENDS_WITH_COLON = re.compile("[:\uff1a]\\s*$")  # an ASCII or a full-width colon
_ADDRESS = re.compile(r"\S@\S+\.\w")
_DATE_OR_TIME = re.compile(r"\b(?:19|20)\d\d\b|\b\d{1,2}[:.]\d{2}\b|\d{4}年")
_ORIGINAL_DIVIDER = re.compile(
    r"^\s*>?\s*-{2,}\s*(?:original message|message d'origine|ursprüngliche nachricht"
    r"|oprindelig (?:besked|meddelelse)|opprinnelig melding|ursprungligt meddelande"
    r"|oorspronkelijk bericht|messaggio originale|mensaje original|mensagem original"
    r"|wiadomość oryginalna|původní zpráva|исходное сообщение|alkuperäinen viesti"
    r"|on .{1,200} wrote)\s*-{2,}\s*$",
    re.IGNORECASE,
)
# quotequail's forward dividers without its "Original Message" ones, which mark replies.
_FORWARD_DIVIDER = re.compile(
    r"^\s*>?\s*(?:-{2,}\s*)?(?:begin forwarded message|forwarded message|forwarded e-?mail"
    r"|anfang der weitergeleiteten (?:e-mail|nachricht)|weitergeleitete nachricht"
    r"|début du message réexpédié|message transféré|inicio del mensaje reenviado"
    r"|mensaje reenviado|mensagem encaminhada|messaggio inoltrato|doorgestuurd bericht"
    r"|begin doorgestuurd bericht|vidarebefordrat meddelande|videresendt meddelelse"
    r"|пересылаемое сообщение)\s*(?::|-{2,})?\s*$",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class QuoteHeader:
    """The lines ``first`` to ``last`` (inclusive) introduce the quoted history."""

    first: int
    last: int


def is_forward(text: str) -> bool:
    return _FORWARD_DIVIDER.search(text) is not None


def find_quote_header(lines: list[str]) -> QuoteHeader | None:
    """The first quote header or "Original Message" divider, by line number."""
    # French typography puts a no-break space before the colon ("De\xa0:").
    lines = [line.replace("\xa0", " ") for line in lines]
    found = [
        h
        for h in (_library_header(lines), _quotequail_header(lines), _our_header(lines))
        if h is not None
    ]
    if not found:
        return None
    first = min(found, key=lambda h: h.first)
    return _with_divider_above(lines, first)


def _with_divider_above(lines: list[str], header: QuoteHeader) -> QuoteHeader:
    """The header with the divider line above it (blank lines between), if there is one."""
    above = header.first - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    if above >= 0 and _DIVIDER_LINE.match(lines[above]):
        return QuoteHeader(above, header.last)
    return header


def quoted_after(lines: list[str], index: int) -> bool:
    """The first non-blank line after ``index`` is a ``>`` quote."""
    for line in lines[index + 1 :]:
        if line.strip():
            return _QUOTED.match(line) is not None
    return False


def _library_header(lines: list[str]) -> QuoteHeader | None:
    text = "\n".join(lines)
    match = _LIBRARY_HEADERS.search(text)
    if match is None:
        return None
    start = match.start() + len(match.group()) - len(match.group().lstrip("\n"))
    first = text.count("\n", 0, start)
    last = text.count("\n", 0, max(start, match.end() - 1))
    # The library's header block needs two fields it knows; a field it does not ("Envoyé
    # le :") may stand above them, and belongs to the same block.
    while first > 0 and _HEADER_FIELD.match(lines[first - 1]):
        first -= 1
    return QuoteHeader(first, last)


def _quotequail_header(lines: list[str]) -> QuoteHeader | None:
    # quotequail tries each pattern on each line in Python (seconds for 50,000 lines): its
    # own default stops at 1,000 lines too, and the other two sources scan the rest.
    lines = lines[:QUOTEQUAIL_LINES]
    text = "\n".join(lines)
    # Each call splits the text in two; the second part's length tells the line number.
    begin = quotequail.quote(text, limit=len(lines) + 1, quote_intro_line=True)
    if len(begin) < 2:
        return None
    end = quotequail.quote(text, limit=len(lines) + 1)
    first = len(lines) - begin[1][1].count("\n") - 1
    last = len(lines) - end[1][1].count("\n") - 2 if len(end) > 1 else first
    return QuoteHeader(first, max(first, last))


def _our_header(lines: list[str]) -> QuoteHeader | None:
    for last, line in enumerate(lines):
        if _ORIGINAL_DIVIDER.match(line):
            return QuoteHeader(last, last)
        if not _ENDS_WITH_COLON.search(line):
            continue
        quote_follows = quoted_after(lines, last)
        # The shortest span that qualifies, so that a line written above is not taken along.
        for first in range(last, max(last - MAX_WRAPPED_LINES, -1), -1):
            if not lines[first].strip():
                break
            joined = " ".join(part.strip().lstrip(">").strip() for part in lines[first : last + 1])
            if _is_attribution(joined, quote_follows):
                return QuoteHeader(first, last)
    return None


def _is_attribution(joined: str, quote_follows: bool) -> bool:
    if len(joined) > MAX_ATTRIBUTION or not _ENDS_WITH_COLON.search(joined):
        return False
    address = _ADDRESS.search(joined) is not None
    dated = _DATE_OR_TIME.search(joined) is not None
    # A sender and a date are an attribution on their own; either one alone only when a
    # quote follows ("Write to help@example.com:" followed by a list is the customer's).
    return (address and dated) or ((address or dated) and quote_follows)
