"""``dormouse simulate sms|email|chat``: post to the running Dormouse as its providers would."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import click
import httpx

from conversations.addresses import normalize_address
from conversations.errors import InvalidAddress
from conversations.settings import Settings, get_settings

if TYPE_CHECKING:
    pass

from cli.root import cli


@cli.group()
def simulate() -> None:
    """Send a provider webhook to a running Dormouse, signed as the provider would."""


@simulate.command("sms")
@click.option("--from", "sender", required=True, help="customer phone number")
@click.option("--to", "recipient", default="+15550006666", show_default=True)
@click.option("--url", default=None, help="API base URL (default: http://127.0.0.1:PORT)")
@click.option(
    "--wait",
    type=float,
    default=10.0,
    show_default=True,
    help="seconds to wait for the reply (0: do not)",
)
@click.argument("text")
def simulate_sms(sender: str, recipient: str, url: str | None, wait: float, text: str) -> None:
    """Post TEXT as an inbound SMS, signed like Twilio with the webhook auth token."""
    from twilio.request_validator import RequestValidator

    from channels.sms.webhooks import CONVERSATION_HEADER, REPLY_HEADER
    from cli.supervisor import _read_state, api_base

    settings = get_settings()
    try:
        # A number typed here must be one a customer could text from, as on `dormouse send`.
        sender = normalize_address("phone", sender, settings.default_region)
    except InvalidAddress as exc:
        raise click.BadParameter(str(exc), param_hint="'--from'") from None
    running = _read_state(settings) or {}
    base = url.rstrip("/") if url else api_base(settings)
    path = "/webhooks/twilio/sms"
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": settings.twilio_account_sid or "AC" + "0" * 32,
        "From": sender,
        "To": recipient,
        "Body": text,
        "NumMedia": "0",
    }
    # Sign the URL the server verifies: PUBLIC_URL, which `dormouse up` sets to its own address.
    public = running.get("public_url") or (base if url else settings.public_url)
    signed_url = public.rstrip("/") + path
    signature = RequestValidator(settings.webhook_auth_token()).compute_signature(
        signed_url, params
    )
    watch = _ReplyWatch(base, settings)
    answer = _post_webhook(base, path, data=params, headers={"X-Twilio-Signature": signature})
    conversation = answer.headers.get(CONVERSATION_HEADER)
    if conversation:
        click.echo(f"conversation {conversation}")
    reply = answer.headers.get(REPLY_HEADER)
    if reply == "none":
        click.echo("no reply is coming: STOP, START and an opted-out number get none")
        return
    if reply == "held":
        click.echo(
            f"held: no turn runs until an operator releases it "
            f"(`dormouse conversations release {conversation}`)"
        )
        return
    watch.print_replies(to=sender, wait=wait)


@simulate.command("email")
@click.option("--from", "sender", required=True, help="customer email address")
@click.option("--to", "recipient", default="support@localhost", show_default=True)
@click.option("--subject", default="Hello", show_default=True)
@click.option("--in-reply-to", "in_reply_to", default=None, help="a Message-ID to answer")
@click.option("--url", default=None, help="API base URL (default: http://127.0.0.1:PORT)")
@click.option(
    "--wait",
    type=float,
    default=10.0,
    show_default=True,
    help="seconds to wait for the reply (0: do not)",
)
@click.option(
    "--forged",
    is_flag=True,
    help="leave out the receiving service's DMARC pass: the mail is held (EMAIL_REQUIRE_AUTH)",
)
@click.argument("text")
def simulate_email(
    sender: str,
    recipient: str,
    subject: str,
    in_reply_to: str | None,
    url: str | None,
    wait: float,
    forged: bool,
    text: str,
) -> None:
    """Post TEXT as an inbound email (raw MIME), authenticated with EMAIL_INBOUND_SECRET.

    It carries an Authentication-Results header saying DMARC passed, as a receiving service
    would write it (authserv-id dormouse-simulate: add it to EMAIL_AUTHSERV_IDS if you set
    that); --forged leaves it out."""
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    from cli.supervisor import api_base
    from conversations.types import utcnow

    settings = get_settings()
    base = url.rstrip("/") if url else api_base(settings)
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, recipient, subject
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    if not forged:
        domain = sender.rpartition("@")[2].rstrip(">").strip()
        mail["Authentication-Results"] = f"dormouse-simulate; dmarc=pass header.from={domain}"
    if in_reply_to:
        reference = in_reply_to if in_reply_to.startswith("<") else f"<{in_reply_to}>"
        mail["In-Reply-To"] = mail["References"] = reference
    mail.set_content(text)
    watch = _ReplyWatch(base, settings)
    answer = _post_webhook(
        base,
        "/webhooks/email",
        content=bytes(mail),
        headers={
            "Content-Type": "message/rfc822",
            "Authorization": f"Bearer {settings.email_secret()}",
        },
    )
    if answer.json().get("status") == "held":
        click.echo(
            "held: no reply will come until an operator releases it "
            f"(`dormouse conversations release {answer.json()['conversation_id']}`)"
        )
        return
    watch.print_replies(to=sender.rpartition("<")[2].rstrip(">").strip(), wait=wait)


@simulate.command("chat")
@click.option("--user", "user_id", required=True, help="the chat user id")
@click.option("--service", default=None, help="the service (default: DEFAULT_SERVICE)")
@click.option("--url", default=None, help="API base URL (default: http://127.0.0.1:PORT)")
@click.option(
    "--wait",
    type=float,
    default=10.0,
    show_default=True,
    help="seconds to wait for the reply (0: do not)",
)
@click.argument("text")
def simulate_chat(
    user_id: str, service: str | None, url: str | None, wait: float, text: str
) -> None:
    """Post TEXT as a chat message, signed (Standard Webhooks) with CHAT_WEBHOOK_SECRET."""
    from cli.supervisor import api_base
    from conversations.standard_webhooks import sign

    settings = get_settings()
    base = url.rstrip("/") if url else api_base(settings)
    payload: dict[str, Any] = {"id": "sim_" + uuid.uuid4().hex, "user_id": user_id, "text": text}
    if service:
        payload["service"] = service
    body = json.dumps(payload)
    headers = sign(settings.chat_secret(), "sim_" + uuid.uuid4().hex, body)
    watch = _ReplyWatch(base, settings)
    _post_webhook(
        base,
        "/webhooks/chat",
        content=body,
        headers={**headers, "content-type": "application/json"},
    )
    watch.print_replies(to=user_id.strip(), wait=wait)


class _ReplyWatch:
    """Prints the replies to a simulated message, as the customer would see them: the outbox
    rows for that address newer than the ones there before it was sent."""

    def __init__(self, base: str, settings: Settings) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {next(iter(settings.api_keys()))}"}
        self.seen = {row["id"] for row in self._outbox()}

    def _outbox(self) -> list[dict[str, Any]]:
        try:
            answer = httpx.get(
                self.base + "/v1/outbox", params={"limit": 50}, headers=self.headers, timeout=5
            )
        except httpx.HTTPError:
            return []
        rows: list[dict[str, Any]] = answer.json() if answer.status_code == 200 else []
        return rows

    def print_replies(self, *, to: str, wait: float) -> None:
        if wait <= 0:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            new = [r for r in self._outbox() if r["id"] not in self.seen]
            mine = [r for r in new if r["to_address"].lower() == to.strip().lower()]
            if mine:
                for row in sorted(mine, key=lambda r: r["id"]):
                    click.echo(f"reply: {row['body']}")
                return
            time.sleep(0.3)
        click.echo(f"no reply within {wait:g}s yet: `dormouse outbox` shows it when it comes")


def _post_webhook(base: str, path: str, **request: Any) -> httpx.Response:
    """POST like a provider would, print the answer, exit 1 on a refusal."""
    try:
        response = httpx.post(base + path, timeout=15, **request)
    except httpx.ConnectError:
        raise click.ClickException(
            f"nothing answers at {base}: is Dormouse running (`make up`)? Use --url otherwise."
        ) from None
    click.echo(f"{response.status_code} {response.text}")
    if response.status_code in (401, 403):
        data_dir = get_settings().data_dir
        click.echo(
            f"dormouse: refused: simulate signs with the secrets under DATA_DIR={data_dir}; "
            "run it with the DATA_DIR of the running `dormouse up` (or from its directory)",
            err=True,
        )
    if response.status_code >= 400:
        sys.exit(1)
    return response
