"""Every counter and histogram of work done, in one place: what a process counts as it works.

Each process counts what it does itself (the API its webhooks, a worker its turns and
deliveries, a sweep its closes). Under ``dormouse up``, and wherever
``PROMETHEUS_MULTIPROC_DIR`` is set, these are prometheus-client's multiprocess values: every
process (prefork children too) writes its own file, and one scrape sums them
(``conversations/metrics_serving.py``). So only counters and histograms live here, never a
gauge: a gauge of one process's memory means nothing once summed over processes. What
describes the database (messages pending, the outbox backlog) is read at scrape time instead
(``conversations/backlog.py``), right whichever process changed the rows.

Label values are bounded: channel, service and tool names come from configuration, model
names from the agents, outcomes and reasons from the fixed sets documented here and in the
README's *Metrics and logs*. Never an id, an address or an error message.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics

# The *_created series say when a process first counted; summed over processes (multiprocess
# mode drops them anyway) they mean nothing, so one process's scrape should not show them.
disable_created_metrics()

# Seconds: a webhook or delivery is milliseconds, a model call seconds, a slow model a minute.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)

WEBHOOKS_ACCEPTED = Counter(
    "dormouse_webhooks_accepted",
    "Webhook posts answered 2xx (stored, duplicate, recorded or ignored), by channel.",
    ["channel"],
)
WEBHOOKS_REJECTED = Counter(
    "dormouse_webhooks_rejected",
    "Webhook posts refused, by channel and reason (see webhook_reason).",
    ["channel", "reason"],
)

TURN_SECONDS = Histogram(
    "dormouse_turn_duration_seconds",
    "One turn from claim to commit (or to giving up), by outcome: committed, failed "
    "(released for retry), lease_lost, quarantined, skipped (nothing to answer), limited "
    "(held by a spending limit).",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
REPLY_SECONDS = Histogram(
    "dormouse_reply_latency_seconds",
    "From the oldest message a committed turn answered arriving to that turn's commit.",
    ["channel"],
    buckets=LATENCY_BUCKETS,
)
LEASES_LOST = Counter(
    "dormouse_leases_lost",
    "Turns whose commit was refused because another worker took the conversation over.",
)
QUARANTINES = Counter(
    "dormouse_quarantines",
    "Conversations handed to a person after MAX_TURN_ATTEMPTS failed turns, or a turn over "
    "TURN_MAX_MODEL_REQUESTS, by reason (attempts, model_requests).",
    ["reason"],
)

MODEL_REQUESTS = Counter(
    "dormouse_model_requests",
    "Model requests of Pydantic AI agents, by service, model and outcome (ok, error).",
    ["service", "model", "outcome"],
)
MODEL_SECONDS = Histogram(
    "dormouse_model_request_duration_seconds",
    "One model request (retries inside it included), by service and model.",
    ["service", "model"],
    buckets=LATENCY_BUCKETS,
)
MODEL_TOKENS = Counter(
    "dormouse_model_tokens",
    "Tokens the model reported, by service, model and kind (input, output).",
    ["service", "model", "kind"],
)
TOOL_CALLS = Counter(
    "dormouse_tool_calls",
    "Tool calls of Pydantic AI agents, by tool and outcome (ok, error, timeout, retry, "
    "invalid_arguments).",
    ["tool", "outcome"],
)
JOURNAL_REPLAYED = Counter(
    "dormouse_journal_replayed",
    "Steps a retried turn took from its step journal instead of doing them again, by kind "
    "(model: a model request not sent; tool: a tool call not run).",
    ["kind"],
)

DELIVERIES = Counter(
    "dormouse_deliveries",
    "Outbox send attempts and reconciliations, by channel and outcome: sent, failed (for "
    "good), retry (transient, backing off), ambiguous (outcome unknown, reconciled later).",
    ["channel", "outcome"],
)

SWEEP_SECONDS = Histogram(
    "dormouse_sweep_duration_seconds",
    "One run of a periodic sweep, by sweep (redrive, timeouts, purge).",
    ["sweep"],
    buckets=LATENCY_BUCKETS,
)
SWEEP_CONVERSATIONS = Counter(
    "dormouse_sweep_conversations",
    "Conversations the inactivity sweep acted on, by action (nudged, closed).",
    ["action"],
)
REDRIVEN = Counter(
    "dormouse_redriven",
    "Work the redrive sweep found stuck and woke again, by kind (turns, deliveries, "
    "reconciles, wrap_ups): non-zero means the broker lost wake-ups.",
    ["kind"],
)

# Counted by workers/webhooks.py after each attempt is settled.
EVENT_DELIVERIES = Counter(
    "dormouse_event_deliveries",
    "Event webhook posts to subscribers, by outcome (delivered, retry, failed).",
    ["outcome"],
)

# Webhook refusals by what the HTTP status says, so the reason label stays a small fixed set
# whatever sentence a channel's check puts in its detail.
_REASONS = {
    400: "malformed",
    401: "unauthenticated",
    403: "signature",
    413: "too_large",
    415: "content_type",
    422: "invalid",
    503: "unavailable",
}


def webhook_reason(status: int) -> str:
    """The ``reason`` label of a refused webhook answered ``status``."""
    return _REASONS.get(status, "server_error" if status >= 500 else f"http_{status}")


LIMITED = Counter(
    "dormouse_limited",
    "What a spending limit stopped, by limit (the LIMIT_* setting: conversations_per_address, "
    "conversations_per_domain, turns_per_conversation, turns, sms_per_number), and mail held "
    "for failing authentication (limit=email_auth).",
    ["limit"],
)
