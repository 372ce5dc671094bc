"""Configuration from the environment, one typed object for every process.

Every field is an environment variable of the same name (upper case); the README's
configuration table lists them. Defaults give the embedded mode: a SQLite file and an
embedded Redis-compatible server under ``DATA_DIR``, no outside service needed.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import phonenumbers
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conversations.channel_names import CHANNEL_NAMES
from conversations.data_dir import create_secret_file, make_dir
from conversations.outbound_http import bad_character
from conversations.spending import parse_limit
from conversations.standard_webhooks import check_whsec, new_whsec
from conversations.timeouts import Policy, parse_duration, parse_schedule

DoubleTexting = Literal["coalesce", "interrupt"]

EMAIL_AUTH_RULES = ("dmarc", "off")
# Durations that may not be "never", and why.
NEVER_REFUSED = {
    "webhook_disable_after": "",
    "memory_retention": ": it is the erasure window",
    "idempotency_key_ttl": ": the answers kept hold customers' addresses and text",
}


def finite_duration(value: str) -> timedelta:
    """A duration validated as not "never" (``NEVER_REFUSED``)."""
    delta = parse_duration(value)
    assert delta is not None
    return delta


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    data_dir: Path = Path("var")
    database_url: str = ""
    broker_url: str = ""
    public_url: str = "http://127.0.0.1:8000"
    port: int = 8000

    dormouse_api_keys: str = ""

    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from_number: str = ""
    twilio_messaging_service_sid: str = ""
    twilio_api_url: str = ""
    twilio_http_timeout: float = 10.0

    email_from: str = "Dormouse <dormouse@localhost>"
    email_services: str = ""  # "support@acme.test=support,sales@acme.test=sales"
    email_inbound_secret: str = ""
    email_max_bytes: int = Field(10 * 1024 * 1024, gt=0)
    # Counted before the mail is parsed: parsing costs about 0.25 ms of CPU per part.
    email_max_parts: int = Field(100, gt=0)
    email_max_depth: int = Field(10, gt=0)
    mailgun_signing_key: str = ""
    mailgun_max_age: float = Field(300.0, gt=0)  # seconds a Mailgun signature stays valid
    smtp_url: str = ""  # smtp://user:pass@host:587, smtp+starttls://…, smtps://…:465
    # Mail that fails the receiving service's authentication verdicts is held, not answered:
    # "dmarc" (the default outside embedded mode) or "off" (the default in embedded mode).
    email_require_auth: str = ""
    # The authserv-ids of the receiving service whose Authentication-Results headers count
    # ("mx.sendgrid.net,amazonses.com"); empty: only the topmost one, which it prepended.
    email_authserv_ids: str = ""
    smtp_timeout: float = Field(30.0, gt=0)

    # Standard Webhooks secret ("whsec_" + base64) of POST /webhooks/chat and of the callbacks.
    chat_webhook_secret: str = ""
    chat_callback_url: str = ""  # where replies are POSTed; unset: only the live API has them
    chat_http_timeout: float = Field(10.0, gt=0)

    # Signs the operator console's session cookies (itsdangerous HMAC); changing it signs
    # every operator out.
    console_secret: str = ""
    console_session_hours: float = Field(12.0, gt=0)
    # Addresses or CIDRs of the reverse proxies whose X-Forwarded-For/-Proto the API believes
    # ("10.0.0.5,192.168.0.0/24"); empty: none, the connecting address is the client's.
    trusted_proxies: str = ""
    # /docs, /redoc and /openapi.json; false: all three are 404.
    docs_enabled: bool = True
    # Event webhooks (conversations/webhook_outbox.py, workers/webhooks.py).
    webhook_timeout: float = Field(15.0, gt=0)  # seconds a receiver may take to answer
    # Event webhook endpoints and CHAT_CALLBACK_URL on loopback or private addresses
    # (conversations/outbound_http.py). Unset: allowed in embedded mode, where receivers run
    # beside Dormouse; refused otherwise. Link-local and cloud metadata are refused always.
    webhook_allow_private: bool | None = None
    webhook_retry_schedule: str = "0,5s,5m,30m,2h,5h,10h,14h,20h,24h"
    webhook_disable_after: str = "5d"  # an endpoint failing this long is disabled

    default_service: str = "default"
    default_region: str = "US"
    sms_services: str = ""  # "+15005550006=support,+15005550007=sales": the number picks

    dormouse_agents: str = ""  # "acme.agents" or "acme.agents:by_service"
    model: str = ""  # a Pydantic AI model string for the default agent: "openai:gpt-4o-mini"
    model_base_url: str = ""
    model_name: str = "gpt-4o-mini"
    model_api_key: str = ""
    model_timeout: float = Field(60.0, gt=0)
    model_retries: int = Field(2, ge=0)  # 429/5xx/timeouts, with backoff, inside the turn
    agent_instructions: str = "You are a helpful assistant for a business, answering its customers."
    turn_max_model_requests: int = Field(8, gt=0)
    tool_timeout: float = Field(10.0, gt=0)  # for tools that name no limit of their own
    quarantine_message: str = (
        "Sorry, something went wrong on our side. A person from our team will reply shortly."
    )

    # A customer's message that arrives while a turn waits on the model: "coalesce" answers
    # it in the next turn; "interrupt" cancels that model request and asks again with it
    # added, so a chat user who sends two lines quickly gets one answer to both.
    double_texting_sms: DoubleTexting = "coalesce"
    double_texting_email: DoubleTexting = "coalesce"
    double_texting_chat: DoubleTexting = "interrupt"

    lease_seconds: int = Field(120, gt=0)
    turn_time_limit: int = Field(90, gt=0)
    max_turn_attempts: int = Field(5, gt=0)
    history_window: int = Field(20, gt=0)
    redrive_interval: float = Field(15.0, gt=0)
    # A row the redrive woke is left alone this long, unless it needs work anew meanwhile.
    redrive_rewake_after: float = Field(60.0, gt=0)
    delivery_max_attempts: int = Field(8, gt=0)
    delivery_backoff_base: float = Field(2.0, gt=0)
    delivery_reconcile_after: float = Field(60.0, gt=0)
    broker_visibility_timeout: int = Field(3600, gt=0)
    max_webhook_bytes: int = Field(64 * 1024, gt=0)
    max_api_bytes: int = Field(256 * 1024, gt=0)  # /v1 request bodies
    # A live stream reads the database this often without a hint: the most a lost hint can
    # delay an event (a stream also reads whenever the hint subscription is re-established).
    events_poll_seconds: float = Field(30.0, gt=0)
    # How long a live interaction waits for the agent's reply before it answers an error
    # event naming the cursor to resume from (the reply still comes, on the events stream).
    live_reply_timeout: float = Field(120.0, gt=0)
    # GET /metrics: open when empty (Prometheus scrapes without credentials by default);
    # set, it takes only `Authorization: Bearer <token>`.
    metrics_token: str = ""
    # A worker or beat alone (one per container) serves its metrics on this port; 0: not at
    # all. `dormouse up` ignores it: its API's /metrics shows every process it runs.
    metrics_port: int = Field(0, ge=0, le=65535)

    # Shipped inactivity timeouts, used where no operator policy applies ("never" allowed).
    timeout_sms: str = "24h"
    timeout_email: str = "72h"
    timeout_chat: str = "30m"
    timeout_default: str = "24h"
    timeout_sweep_interval: float = Field(30.0, gt=0)

    # Spending limits (conversations/spending.py): "N/minute|hour|day" or "off". Defaults sit
    # far above the benchmarks' bursts (200 customers at once; 40 webhooks/s from 1,000
    # numbers for minutes) and far below what a stranger's loop would run up.
    limit_conversations_per_address: str = "20/hour"
    limit_conversations_per_domain: str = "1000/hour"  # mail: the sender's domain
    limit_turns_per_conversation: str = "12/minute"
    limit_turns: str = "6000/minute"  # every turn of this installation
    limit_sms_per_number: str = "250/day"
    limit_storage_url: str = ""  # where they are counted; empty: the broker's Redis

    memory_retention: str = "14d"
    # How long an Idempotency-Key's first answer is kept (it copies the customer's address and
    # text); the purge sweep deletes older ones.
    idempotency_key_ttl: str = "24h"
    purge_interval: float = Field(3600.0, gt=0)
    help_text: str = "Reply STOP to stop messages, START to resume. Write to us any time for help."

    @field_validator(
        "limit_conversations_per_address",
        "limit_conversations_per_domain",
        "limit_turns_per_conversation",
        "limit_turns",
        "limit_sms_per_number",
    )
    @classmethod
    def _limit(cls, value: str, info: ValidationInfo) -> str:
        parse_limit(value, str(info.field_name).upper())
        return value.strip()

    @field_validator("webhook_allow_private", mode="before")
    @classmethod
    def _allow_private(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"TRUSTED_PROXIES: {item!r} is not an address or CIDR") from None
        return value.strip()

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]

    @field_validator("email_require_auth")
    @classmethod
    def _auth_rule(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("", *EMAIL_AUTH_RULES):
            raise ValueError(f"EMAIL_REQUIRE_AUTH: {value!r}; use dmarc or off")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return check_public_url(value)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            hint = " (the United Kingdom is GB)" if region == "UK" else ""
            raise ValueError(
                f"accepts a two-letter ISO 3166 region code such as US, GB or DE{hint}"
            )
        return region

    @field_validator("dormouse_api_keys")
    @classmethod
    def _api_keys(cls, value: str) -> str:
        for n, pair in enumerate(filter(None, (p.strip() for p in value.split(","))), 1):
            name, sep, key = pair.partition(":")
            if not sep or not name.strip() or not key.strip():
                raise ValueError(f"accepts name:key pairs separated by commas; pair {n} is not one")
        return value

    @property
    def embedded(self) -> bool:
        """Embedded mode (no DATABASE_URL): one machine, generated secrets, lenient defaults."""
        return not self.database_url

    @property
    def allow_private_targets(self) -> bool:
        """WEBHOOK_ALLOW_PRIVATE as given, else whether this is embedded mode."""
        if self.webhook_allow_private is None:
            return self.embedded
        return self.webhook_allow_private

    @property
    def email_auth_rule(self) -> str:
        return self.email_require_auth or ("off" if self.embedded else "dmarc")

    @property
    def email_authserv_id_set(self) -> frozenset[str]:
        return frozenset(i.strip().lower() for i in self.email_authserv_ids.split(",") if i.strip())

    @model_validator(mode="after")
    def _limits_nest(self) -> Settings:
        # A turn must end (time limit) before its lease expires, and the lease before the
        # broker would redeliver the message of a turn still running.
        if not self.turn_time_limit < self.lease_seconds < self.broker_visibility_timeout:
            raise ValueError(
                "need TURN_TIME_LIMIT < LEASE_SECONDS < BROKER_VISIBILITY_TIMEOUT, got "
                f"{self.turn_time_limit}, {self.lease_seconds}, {self.broker_visibility_timeout}"
            )
        return self

    @property
    def turn_deadline(self) -> float:
        """Seconds an agent run may take: inside TURN_TIME_LIMIT, leaving the commit room."""
        return self.turn_time_limit * 0.9

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @property
    def webhook_schedule(self) -> list[float]:
        return parse_schedule(self.webhook_retry_schedule)

    @field_validator("webhook_disable_after", "memory_retention", "idempotency_key_ttl")
    @classmethod
    def _finite(cls, value: str, info: ValidationInfo) -> str:
        if parse_duration(value) is None:
            why = NEVER_REFUSED[str(info.field_name)]
            raise ValueError(f"{str(info.field_name).upper()} cannot be never{why}")
        return value

    @property
    def webhook_disable_delta(self) -> timedelta:
        return finite_duration(self.webhook_disable_after)

    @property
    def idempotency_key_ttl_delta(self) -> timedelta:
        return finite_duration(self.idempotency_key_ttl)

    @property
    def memory_retention_delta(self) -> timedelta:
        return finite_duration(self.memory_retention)

    @field_validator("timeout_sms", "timeout_email", "timeout_chat", "timeout_default")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    def double_texting(self, channel: str) -> DoubleTexting:
        """DOUBLE_TEXTING_<CHANNEL>: what a message arriving mid-turn does on ``channel``."""
        policy: DoubleTexting = getattr(self, f"double_texting_{channel}", "coalesce")
        return policy

    def default_policies(self) -> dict[str, Policy]:
        """Channel ('' for any other) → shipped policy: TIMEOUT_<CHANNEL> of each channel
        that exists, else TIMEOUT_DEFAULT."""
        fallback = self.timeout_default
        shipped = {name: getattr(self, f"timeout_{name}", fallback) for name in CHANNEL_NAMES}
        return {
            **{name: Policy(parse_duration(value)) for name, value in shipped.items()},
            "": Policy(parse_duration(fallback)),
        }

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'dormouse.db'}"

    @property
    def embedded_broker_socket(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or f"redis+socket://{self.embedded_broker_socket}"

    @property
    def uses_embedded_broker(self) -> bool:
        return not self.broker_url

    @property
    def twilio_configured(self) -> bool:
        """Real sends need an account; without one, replies go to the dev sink."""
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    def webhook_auth_token(self) -> str:
        """The token Twilio signs webhooks with.

        Without Twilio credentials a local token is generated once under ``DATA_DIR``, so the
        signature check is never switched off, and ``dormouse simulate`` signs with it.
        """
        return self.twilio_auth_token or local_secret(self.data_dir, "twilio-dev-auth-token")

    def email_secret(self) -> str:
        """The shared secret inbound-parse services present (basic password or bearer).

        Generated once under ``DATA_DIR`` when unset, like the Twilio dev token: the email
        webhook is never open to anyone who finds it.
        """
        return self.email_inbound_secret or local_secret(self.data_dir, "email-inbound-secret")

    def chat_secret(self) -> str:
        """The ``whsec_`` secret chat webhooks and callbacks are signed with (Standard
        Webhooks). Generated once under ``DATA_DIR`` when unset, like the email secret."""
        return self.chat_webhook_secret or local_secret(
            self.data_dir, "chat-webhook-secret", new_whsec
        )

    def console_key(self) -> str:
        """What signs console sessions. Generated once under ``DATA_DIR`` when unset (embedded
        mode only: behind a load balancer each API would sign with its own)."""
        return self.console_secret or local_secret(
            self.data_dir, "console-secret", lambda: secrets.token_urlsafe(32)
        )

    @field_validator("chat_webhook_secret")
    @classmethod
    def _whsec(cls, value: str) -> str:
        value = value.strip()
        if value:
            check_whsec(value)
        return value

    @field_validator("chat_callback_url")
    @classmethod
    def _callback_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"CHAT_CALLBACK_URL: {value!r} is not an http(s) URL")
        bad = bad_character(value)
        if bad is not None:
            raise ValueError(f"CHAT_CALLBACK_URL: {value!r} contains {bad!r}")
        return value

    def email_addresses(self) -> dict[str, str]:
        """Our address (lower case) → the service it serves, from ``EMAIL_SERVICES``."""
        table: dict[str, str] = {}
        for pair in self.email_services.split(","):
            address, sep, service = pair.strip().partition("=")
            if sep and address.strip() and service.strip():
                table[address.strip().lower()] = service.strip()
        return table

    def routed_services(self) -> set[str]:
        """Every service a number or an address routes messages to."""
        return {*self.sms_numbers().values(), *self.email_addresses().values()}

    def email_service_for(self, recipients: list[str]) -> str:
        """The service a mail belongs to, from the first recipient ``EMAIL_SERVICES`` names."""
        table = self.email_addresses()
        for recipient in recipients:
            if recipient.lower() in table:
                return table[recipient.lower()]
        return self.default_service

    def sms_numbers(self) -> dict[str, str]:
        """Twilio number → the service it serves, from ``SMS_SERVICES``."""
        table: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in self.sms_services.split(","))):
            number, _, service = pair.partition("=")
            table[number.strip()] = service.strip()
        return table

    def sms_number_for(self, service: str) -> str | None:
        """The number a service's SMS are sent from, if ``SMS_SERVICES`` gives it one."""
        for number, owner in self.sms_numbers().items():
            if owner == service:
                return number
        return None

    @field_validator("sms_services")
    @classmethod
    def _sms_services(cls, value: str) -> str:
        for pair in filter(None, (p.strip() for p in value.split(","))):
            number, sep, service = pair.partition("=")
            if not sep or not number.strip().startswith("+") or not service.strip():
                raise ValueError(f"SMS_SERVICES: {pair!r} is not a +E164number=service pair")
        return value

    @field_validator("email_services")
    @classmethod
    def _services(cls, value: str) -> str:
        for pair in filter(None, (p.strip() for p in value.split(","))):
            address, sep, service = pair.partition("=")
            if not sep or "@" not in address or not service.strip():
                raise ValueError(f"EMAIL_SERVICES: {pair!r} is not an address=service pair")
        return value

    def unshared_secrets(self, role: str) -> list[str]:
        """The secrets a process of ``role`` (api, worker) needs that are not set. Generated
        ones suit one machine (embedded mode); on a shared database every machine would make
        its own, and a signature made on one would fail on the next."""
        needed = {
            "api": [
                "DORMOUSE_API_KEYS",
                "EMAIL_INBOUND_SECRET",
                "CHAT_WEBHOOK_SECRET",
                "CONSOLE_SECRET",
            ],
            # A worker signs chat callbacks; the receiver verifies them with the API's secret.
            "worker": ["CHAT_WEBHOOK_SECRET"] if self.chat_callback_url else [],
        }[role]
        if not self.database_url:
            return []
        return [name for name in needed if not str(getattr(self, name.lower())).strip()]

    def api_keys(self) -> dict[str, str]:
        """Map of key → key name. ``DORMOUSE_API_KEYS`` is ``name:key`` pairs, comma separated."""
        if not self.dormouse_api_keys.strip():
            return {local_secret(self.data_dir, "api-key"): "local"}
        keys: dict[str, str] = {}
        for pair in self.dormouse_api_keys.split(","):
            name, sep, key = pair.strip().partition(":")
            if not sep or not name or not key:
                raise ValueError(f"DORMOUSE_API_KEYS: {pair.strip()!r} is not a name:key pair")
            keys[key] = name
        return keys


def check_public_url(value: str) -> str:
    """PUBLIC_URL is what Twilio signs webhooks against: an absolute http(s) origin. Anything
    else would fail every real signature while `simulate`, signing the same URL, passes."""
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("accepts an absolute http(s) URL such as https://dormouse.example.com")
    if parts.path or parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(
            f"accepts only scheme, host and port ({parts.scheme}://{parts.netloc}): "
            "no path, query or fragment"
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError("the port is not a number") from None
    return url


def local_secret(
    data_dir: Path, name: str, generate: Callable[[], str] = lambda: secrets.token_urlsafe(24)
) -> str:
    """Read a secret kept under ``data_dir``, creating it on first use (embedded mode only)."""
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    make_dir(data_dir)
    value = generate()
    tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    create_secret_file(tmp, value + "\n")  # 0600 from the start, never chmod-ed after
    try:
        # link() fails if another process created it first: both then read the same value.
        path.hardlink_to(tmp)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
