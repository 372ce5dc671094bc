"""Whether an inbound mail really comes from its ``From`` domain, by the receiving service's
own verdicts: we cannot check SPF, DKIM or DMARC ourselves (the connecting IP and the
original bytes stay with the service that received the mail), but it records them.

Read from (RFC 8601) ``Authentication-Results`` headers, parsed by ``authres`` (the
maintained parser of that grammar), and from the verdict fields a provider posts beside the
raw mail (SendGrid Inbound Parse's ``SPF`` and ``dkim``; Mailgun's ``X-Mailgun-Spf`` and
``X-Mailgun-Dkim-Check-Result``). Anyone can write an ``Authentication-Results`` header into
the mail they send, so only the receiving service's count: those whose authserv-id is in
``EMAIL_AUTHSERV_IDS``, or without that setting the topmost one, which a receiving service
prepends (RFC 8601 §5: a receiver removes or ignores the ones it did not add).

The rule (``EMAIL_REQUIRE_AUTH=dmarc``): DMARC passed, or, where the domain publishes no
DMARC policy (``dmarc=none`` or no DMARC result at all), SPF or DKIM passed for a domain
aligned with the ``From`` domain (RFC 7489 §3.1, relaxed alignment: the same domain or one
inside the other). Anything else — a DMARC fail, SPF passing for another domain, no verdict
at all — fails, and the mail is held for an operator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser

import authres

from channels.mail.inbound import InboundPost
from conversations.envelope import InboundMessage
from conversations.settings import Settings

AUTH_RESULTS = "Authentication-Results"


@dataclass(frozen=True, slots=True)
class Verdict:
    method: str  # dmarc, spf, dkim
    result: str  # pass, fail, none, softfail, …
    domain: str = ""  # what it vouches for: header.from, smtp.mailfrom's domain, header.d


@dataclass(frozen=True, slots=True)
class Authentication:
    passed: bool
    reason: str  # why, in a line an operator reads
    verdicts: tuple[Verdict, ...] = field(default=())

    def as_json(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "verdicts": [
                f"{v.method}={v.result}{f' ({v.domain})' if v.domain else ''}"
                for v in self.verdicts
            ],
        }


def hold_unless_authenticated(
    parsed: InboundMessage, post: InboundPost, settings: Settings
) -> InboundMessage:
    """``parsed`` as it is, or marked to be held when its sender is not vouched for. The
    verdicts go into the message's metadata either way, for the operator who reads it."""
    if settings.email_auth_rule == "off" or parsed.control == "no_reply":
        return parsed  # an automatic mail is never answered anyway
    # The header block alone: cheap beside the full parse, and the body cannot matter.
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(post.raw.lstrip(b"\r\n"))
    found = authenticate(
        headers,
        parsed.sender,
        fields=post.fields,
        source=post.source,
        trusted_ids=settings.email_authserv_id_set,
    )
    return replace(
        parsed,
        metadata={**parsed.metadata, "authentication": found.as_json()},
        hold=None if found.passed else f"email authentication failed: {found.reason}",
    )


def authenticate(
    message: Message,
    sender: str,
    *,
    fields: Mapping[str, str],
    source: str,
    trusted_ids: frozenset[str],
) -> Authentication:
    """Whether ``sender``'s domain is vouched for by the verdicts the service recorded."""
    verdicts = [*_from_headers(message, trusted_ids), *_from_fields(fields, source)]
    return judge(sender.rpartition("@")[2].lower(), verdicts)


def judge(from_domain: str, verdicts: list[Verdict]) -> Authentication:
    """The ``dmarc`` rule over the verdicts found (pure: tested with a table of cases)."""
    seen = tuple(verdicts)
    dmarc = [v for v in verdicts if v.method == "dmarc"]
    if any(v.result == "pass" for v in dmarc):
        return Authentication(True, "DMARC pass", seen)
    failed = [v for v in dmarc if v.result not in ("none", "")]
    if failed:
        return Authentication(False, f"DMARC {failed[0].result} for {from_domain}", seen)
    for v in verdicts:
        if v.method in ("spf", "dkim") and v.result == "pass" and aligned(v.domain, from_domain):
            return Authentication(True, f"{v.method.upper()} pass, aligned ({v.domain})", seen)
    if not verdicts:
        return Authentication(False, "no authentication verdict from the receiving service")
    return Authentication(
        False, f"neither DMARC nor an aligned SPF or DKIM pass for {from_domain}", seen
    )


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed identifier alignment, without a public suffix list: one domain is the other or
    inside it ("mail.acme.test" and "acme.test"), never two siblings under one suffix."""
    a, b = domain.lower().strip("."), from_domain.lower().strip(".")
    if not a or not b:
        return False
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _from_headers(message: Message, trusted_ids: frozenset[str]) -> list[Verdict]:
    found: list[Verdict] = []
    # get_all: every occurrence, in order from the top (the last hop's first).
    for index, value in enumerate(message.get_all(AUTH_RESULTS) or []):
        parsed = _parse(str(value))
        if parsed is None:
            continue
        authserv_id = str(parsed.authserv_id).lower()
        if trusted_ids and authserv_id not in trusted_ids:
            continue
        if not trusted_ids and index > 0:
            break  # only the receiving service's own, which it put on top
        for result in parsed.results:
            found.append(Verdict(result.method.lower(), result.result.lower(), _domain(result)))
        if not trusted_ids:
            break
    return found


def _parse(value: str) -> authres.AuthenticationResultsHeader | None:
    # Services end the list with ";" or fold it oddly; the grammar refuses a trailing one.
    value = re.sub(r"\s+", " ", value).strip().rstrip(";").strip()
    try:
        return authres.AuthenticationResultsHeader.parse_value(value)
    except Exception:  # authres raises its own SyntaxError and others on what it cannot read
        return None


def _domain(result: object) -> str:
    """The domain a result vouches for: header.from (DMARC), smtp.mailfrom (SPF), header.d
    or header.i (DKIM)."""
    props = {f"{p.type}.{p.name}".lower(): str(p.value) for p in getattr(result, "properties", [])}
    for key in ("header.from", "header.d", "smtp.mailfrom", "header.i", "smtp.helo"):
        if props.get(key):
            return props[key].rpartition("@")[2].lower()
    return ""


def _from_fields(fields: Mapping[str, str], source: str) -> list[Verdict]:
    """Verdicts a provider posts beside the mail (its post is authenticated, the mail's own
    headers are not)."""
    found: list[Verdict] = []
    if source == "sendgrid":
        # SPF: "pass"; dkim: "{@acme.test : pass}" or "{@a.test : pass, @b.test : fail}".
        spf = fields.get("SPF", "").strip().lower()
        if spf:
            # SendGrid checks SPF on the envelope sender, which it does not post: only a
            # pass that DKIM or DMARC backs counts, so it is recorded without a domain.
            found.append(Verdict("spf", spf))
        for domain, result in re.findall(r"@([\w.-]+)\s*:\s*(\w+)", fields.get("dkim", "")):
            found.append(Verdict("dkim", result.lower(), domain.lower()))
    elif source == "mailgun":
        spf = fields.get("X-Mailgun-Spf", "").strip().lower()
        if spf:
            found.append(Verdict("spf", spf))
        dkim = fields.get("X-Mailgun-Dkim-Check-Result", "").strip().lower()
        if dkim:
            # Mailgun does not say whose signature it checked: shown, never aligned.
            found.append(Verdict("dkim", dkim))
    return found
