"""What the customer wrote this time: the readable text of a MIME message.

text/plain is preferred, else HTML rendered to text; any declared charset, with a fallback
for broken ones; quoted history and signatures stripped so the agent sees only the new part.
"""

from __future__ import annotations

import codecs
import logging
import re
from email.message import Message

from email_reply_parser import EmailMessage as ReplyFragments
from inscriptis import get_text

from channels.mail.quotes import find_quote_header, is_forward, quoted_after

log = logging.getLogger(__name__)

_BLANK_RUNS = re.compile(r"\n{3,}")
# NUL and other C0 controls (but tab and newline) are never text, and PostgreSQL refuses NUL.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_TEXT = 100_000
_QUOTE_MARK = re.compile(r"^\s*>")
_QUOTED_TEXT = re.compile(r"^\s*>[>\s]*\S")
# A mail app's advertisement as the last line ("Sent from Outlook Mobile<https://…>"),
# in the languages the quote headers cover; the reply parsers only know "Sent from my".
_TAGLINE = re.compile(
    r"^(?:sent (?:from|with|via) |get outlook for |envoyé (?:depuis|à partir de|de mon) "
    r"|gesendet (?:von|mit) |von meinem .* gesendet|enviado (?:desde|de) |inviato da "
    r"|verzonden (?:vanaf|met) |skickat från |sendt fra |wysłano z ).{0,100}$",
    re.IGNORECASE,
)


class _Fragments(ReplyFragments):  # type: ignore[misc]  # the library is untyped
    """GitHub's fragment scanner with RFC 3676's signature delimiter: "-- " (or "--", as
    clients that trim trailing spaces send it), the "__" rule of Outlook and the "-Ada"
    sign-off it already drops. Its own rule took any line starting "--" for one: a "---"
    divider, "----- Original" or "--Ada" and all below it were lost.
    """

    SIG_REGEX = re.compile(r"(--(?:\s|$)|__|-\w)|(^Sent from my (\w+\s*){1,3})")


def decode_part(part: Message) -> str:
    """A text part's content as ``str``, whatever its declared (or mis-declared) charset.

    The declared charset first; then UTF-8, which most mislabeled mail really is; then UTF-8
    with replacement characters, so one bad byte never costs the whole message.
    """
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload() or "")
    declared = part.get_content_charset()
    try:
        declared = codecs.lookup(declared).name if declared else None
    except LookupError:
        log.debug("unknown charset %r in a %s part", declared, part.get_content_type())
        declared = None
    for charset in (declared or "utf-8", "utf-8"):
        try:
            return payload.decode(charset)
        except (UnicodeDecodeError, LookupError):  # LookupError: "base64" is not a text codec
            continue
    return payload.decode("utf-8", errors="replace")


def html_to_text(html: str) -> str:
    try:
        return str(get_text(html))
    except Exception:  # a hostile document must not cost the message: keep its words
        log.warning("HTML rendering failed; falling back to tag stripping", exc_info=True)
        return re.sub(r"<[^>]*>", " ", html)


def body_text(message: Message) -> str:
    """The message's readable text (text/plain preferred), before reply stripping.

    Every inline text part counts, in order: Apple Mail splits a message around an inline
    picture into text, image, text, and the second text is as much the customer's as the
    first. Of a multipart/alternative only one rendering counts.
    """
    plain = "\n".join(_texts(message, "text/plain"))
    if plain.strip():
        return tidy(plain[: MAX_TEXT * 2])
    html = _texts(message, "text/html")
    if html:
        return tidy(html_to_text("\n".join(html)[: MAX_TEXT * 10])[: MAX_TEXT * 2])
    return ""


def _texts(part: Message, kind: str) -> list[str]:
    """The decoded ``kind`` parts of ``part`` that are not attachments, in order."""
    if part.is_multipart():
        if _is_attachment(part):  # an attached message/rfc822 is not the customer's text
            return []
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if part.get_content_type() == "multipart/report":
            children = children[:1]  # RFC 6522: the human-readable part, not the returned mail
        found = [_texts(child, kind) for child in children]
        if part.get_content_type() == "multipart/alternative":
            # Alternatives say one thing: the first rendering of this kind.
            return next((texts for texts in found if texts), [])
        return [text for texts in found for text in texts]
    if part.get_content_type() == kind and not _is_attachment(part):
        return [decode_part(part)]
    return []


def one_line(value: str, limit: int = 998) -> str:
    """A header value safe to store and to send back: no line breaks, no control bytes."""
    return " ".join(_CONTROLS.sub(" ", value).split())[:limit]


def new_part(text: str) -> str:
    """Only what was written this time: quoted history and the signature removed.

    A forward is kept whole: what was forwarded is what the customer wants read.
    """
    if not text.strip():
        return ""
    # The stripper's regular expressions cost seconds per megabyte: a new part longer than
    # this is not a reply anyone typed, and the agent would not read it all anyway.
    text = tidy(text[:MAX_TEXT])
    if is_forward(text):
        return text
    try:
        latest = _strip_reply(text)
    except Exception:  # the stripper is a heuristic: when it fails, keep the whole text
        log.warning("reply stripping failed; keeping the full text", exc_info=True)
        latest = text
    return tidy(latest) or text


def _strip_reply(text: str) -> str:
    lines = text.split("\n")
    header = find_quote_header(lines)
    if header is not None:
        if quoted_after(lines, header.last):
            # "> " quoted below the header: drop the header line(s) only, so that an answer
            # written below the quote (or between its lines) is still found.
            lines = lines[: header.first] + lines[header.last + 1 :]
        else:
            lines = lines[: header.first]  # an unquoted copy of the history follows
    lines = _lazy_continuations_quoted(lines)
    # GitHub's fragment scanner: drops "> " quoted blocks and "-- " signatures, keeps text
    # written below or between quotes.
    visible = _Fragments("\n".join(lines)).read().reply
    return _without_tagline(visible)


def _lazy_continuations_quoted(lines: list[str]) -> list[str]:
    """A line directly below a quoted line of text is that quote re-wrapped by a client.

    ("> a long line that a client broke in t" / "wo" / ">"): left unmarked, the reply parser
    would take the broken-off end for an answer written below the quote.
    """
    marked = list(lines)
    for i in range(1, len(marked)):
        above, line = marked[i - 1], marked[i]
        if line.strip() and not _QUOTE_MARK.match(line) and _QUOTED_TEXT.match(above):
            marked[i] = "> " + line
    return marked


def _without_tagline(text: str) -> str:
    lines = text.rstrip().split("\n")
    if len(lines) > 1 and _TAGLINE.match(lines[-1].strip()):
        lines.pop()
    return "\n".join(lines)


def tidy(text: str) -> str:
    text = _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [line.rstrip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def attachments(message: Message) -> list[dict[str, object]]:
    """Name, type and size of each attachment; the content itself is not kept."""
    found: list[dict[str, object]] = []
    for part in message.walk():
        if part.is_multipart() or not _is_attachment(part):
            continue
        payload = part.get_payload(decode=True)
        found.append(
            {
                "name": one_line(_filename(part) or "", 255) or None,
                "type": part.get_content_type(),
                "size": len(payload) if isinstance(payload, bytes) else 0,
            }
        )
    return found[:50]


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return True
    maintype = part.get_content_maintype()
    # An inline text/plain part is text the sender put in the message body, named or not
    # (Apple Mail names the pieces of a message it splits); a named inline HTML file is not.
    return maintype not in ("text", "multipart", "message") or (
        disposition == "inline"
        and _filename(part) is not None
        and part.get_content_type() != "text/plain"
    )


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, UnicodeError):
        return "unnamed"
    return str(name)[:255] if name else None
