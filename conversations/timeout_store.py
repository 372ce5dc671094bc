"""Timeout policies in the database, their audit trail, and conversation deadlines.

Callers own the transaction. Deadlines are recomputed on every activity and on every
policy change, so the sweep never has to evaluate a policy: it reads ``expires_at``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, Row, or_, select, update
from sqlalchemy.orm import Session

from conversations.db import transaction
from conversations.models import Conversation, TimeoutPolicy, TimeoutPolicyChange
from conversations.statements import ALL_POLICIES
from conversations.states import ConversationStatus
from conversations.timeouts import (
    Override,
    Policy,
    Scope,
    deadlines,
    effective_policy,
    format_duration,
    governing_scope,
)


def load_policies(session: Session) -> dict[Scope, Policy]:
    """All operator policies. A handful of rows: one read serves a whole sweep batch."""
    rows = session.execute(ALL_POLICIES)
    return {Scope(p.service, p.channel): _policy(p) for p in rows}


def _policy(row: TimeoutPolicy | Row[Any]) -> Policy:
    return Policy(
        inactivity=_td(row.inactivity_seconds),
        nudge_before=_td(row.nudge_before_seconds),
        nudge_message=row.nudge_message,
        closing_message=row.closing_message,
    )


def _td(seconds: int | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


class Governed(Protocol):
    """What picks a conversation's policy: a row, or a turn's snapshot of it (read-only)."""

    @property
    def service(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def timeout_override_set(self) -> bool: ...
    @property
    def timeout_override_seconds(self) -> int | None: ...


def policy_for(
    conv: Governed,
    policies: Mapping[Scope, Policy],
    defaults: Mapping[str, Policy],
    *,
    channel: str | None = None,
) -> Policy:
    """``channel``: the channel the conversation is moving to, if not its stored one."""
    override = None
    if conv.timeout_override_set:
        override = Override(_td(conv.timeout_override_seconds))
    return effective_policy(
        policies,
        service=conv.service,
        channel=channel or conv.channel,
        defaults=defaults,
        override=override,
    )


def deadline_values(
    conv: Governed,
    *,
    status: str,
    last_activity: datetime,
    policies: Mapping[Scope, Policy],
    defaults: Mapping[str, Policy],
    channel: str | None = None,
) -> dict[str, datetime | None]:
    """Column values for a conversation about to be ``status``, last active ``last_activity``:
    to fold into the UPDATE that changes it instead of a read and a write of their own."""
    expires, nudge = None, None
    if status in (ConversationStatus.SUSPENDED, ConversationStatus.RUNNING):
        policy = policy_for(conv, policies, defaults, channel=channel)
        expires, nudge = deadlines(policy, last_activity)
    return {"expires_at": expires, "nudge_due_at": nudge, "nudge_sent_at": None}


def refresh_deadline(
    session: Session,
    conversation_id: uuid.UUID,
    *,
    defaults: Mapping[str, Policy],
    policies: Mapping[Scope, Policy] | None = None,
) -> None:
    """Recompute expires_at / nudge_due_at from last activity; paused (NULL) unless suspended
    or running. A new deadline also re-arms the nudge."""
    conv = session.get_one(Conversation, conversation_id, populate_existing=True)
    expires, nudge = None, None
    if conv.status in (ConversationStatus.SUSPENDED, ConversationStatus.RUNNING):
        policy = policy_for(
            conv, load_policies(session) if policies is None else policies, defaults
        )
        expires, nudge = deadlines(policy, conv.last_activity_at)
    conv.expires_at, conv.nudge_due_at, conv.nudge_sent_at = expires, nudge, None
    session.flush()


def policy_as_dict(p: Policy | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "inactivity": format_duration(p.inactivity),
        "nudge_before": format_duration(p.nudge_before) if p.nudge_before else None,
        "nudge_message": p.nudge_message,
        "closing_message": p.closing_message,
    }


def set_policy(
    session: Session, scope: Scope, policy: Policy, *, actor: str, now: datetime
) -> Policy | None:
    """Create or replace the policy of ``scope``; record the change. Returns the old one."""
    row = session.scalar(
        select(TimeoutPolicy)
        .where(TimeoutPolicy.service == scope.service, TimeoutPolicy.channel == scope.channel)
        .with_for_update()
    )
    old = _policy(row) if row else None
    if row is None:
        row = TimeoutPolicy(service=scope.service, channel=scope.channel)
        session.add(row)
    row.inactivity_seconds = _seconds(policy.inactivity)
    row.nudge_before_seconds = _seconds(policy.nudge_before)
    row.nudge_message = policy.nudge_message
    row.closing_message = policy.closing_message
    row.updated_by, row.updated_at = actor, now
    _audit(session, scope, actor, old, policy, now)
    session.flush()
    return old


def delete_policy(session: Session, scope: Scope, *, actor: str, now: datetime) -> Policy | None:
    row = session.scalar(
        select(TimeoutPolicy)
        .where(TimeoutPolicy.service == scope.service, TimeoutPolicy.channel == scope.channel)
        .with_for_update()
    )
    if row is None:
        return None
    old = _policy(row)
    session.delete(row)
    _audit(session, scope, actor, old, None, now)
    session.flush()
    return old


def _audit(
    session: Session,
    scope: Scope,
    actor: str,
    old: Policy | None,
    new: Policy | None,
    now: datetime,
) -> None:
    session.add(
        TimeoutPolicyChange(
            service=scope.service,
            channel=scope.channel,
            actor=actor,
            old=policy_as_dict(old),
            new=policy_as_dict(new),
            changed_at=now,
        )
    )


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def history(
    session: Session, limit: int = 100, *, before: int | None = None
) -> list[TimeoutPolicyChange]:
    """Newest change first; ``before`` is the id of the last change already seen."""
    query = select(TimeoutPolicyChange).order_by(TimeoutPolicyChange.id.desc()).limit(limit)
    if before is not None:
        query = query.where(TimeoutPolicyChange.id < before)
    return list(session.scalars(query))


@dataclass(frozen=True, slots=True)
class Effect:
    """What setting a policy does at once to the open conversations it will govern."""

    nudge_now: int
    close_now: int


def effect_of(
    session: Session,
    scope: Scope,
    policy: Policy,
    *,
    defaults: Mapping[str, Policy],
    now: datetime,
) -> Effect:
    """How many waiting conversations the next sweep would nudge or close if ``policy``
    governed ``scope`` from ``now``: the ones already past the new deadlines."""
    policies = {**load_policies(session), scope: policy}
    query = select(Conversation).where(Conversation.status == ConversationStatus.SUSPENDED)
    if scope.service:
        query = query.where(Conversation.service == scope.service)
    if scope.channel:
        query = query.where(Conversation.channel == scope.channel)
    if policy.inactivity is not None:
        # Only rows that can be due: quiet at least as long as the earliest new deadline.
        window = policy.inactivity - (policy.nudge_before or timedelta(0))
        quiet_since = now - max(window, timedelta(0))
        query = query.where(
            or_(Conversation.timeout_override_set, Conversation.last_activity_at <= quiet_since)
        )
    nudge_now = close_now = 0
    for conv in session.scalars(query):
        if governing_scope(policies, service=conv.service, channel=conv.channel) != scope:
            continue
        governing = policy_for(conv, policies, defaults)
        expires, nudge = deadlines(governing, conv.last_activity_at, nudged_at=conv.nudge_sent_at)
        if nudge is not None and nudge <= now:
            nudge_now += 1
        elif expires is not None and expires <= now:
            close_now += 1
    return Effect(nudge_now, close_now)


def describe_effect(effect: Effect) -> str:
    """'Nudges 3 open conversations and closes 1 right away.' (or that it does neither)."""

    def n(count: int) -> str:
        return f"{count:,} open conversation{'' if count == 1 else 's'}"

    if not (effect.nudge_now or effect.close_now):
        return "Nudges and closes no open conversation right away."
    said = []
    if effect.nudge_now:
        said.append(f"nudges {n(effect.nudge_now)}")
    if effect.close_now:
        said.append(f"closes {n(effect.close_now)}")
    return " and ".join(said).capitalize() + " right away."


@dataclass(frozen=True, slots=True)
class RecomputeProgress:
    processed: int
    last_id: uuid.UUID | None


def recompute_batch(
    session: Session,
    scope: Scope,
    *,
    after: uuid.UUID | None,
    batch: int,
    defaults: Mapping[str, Policy],
) -> RecomputeProgress:
    """Recompute the deadlines of one batch of the open conversations ``scope`` governs.

    Keyset pagination on the primary key: each batch is its own short transaction, and
    conversations that become active meanwhile get their deadline from that activity.
    """
    query = (
        select(Conversation)
        .where(Conversation.status.in_((ConversationStatus.SUSPENDED, ConversationStatus.RUNNING)))
        .order_by(Conversation.id)
        .limit(batch)
    )
    if scope.service:
        query = query.where(Conversation.service == scope.service)
    if scope.channel:
        query = query.where(Conversation.channel == scope.channel)
    if after is not None:
        query = query.where(Conversation.id > after)
    rows = session.scalars(query).all()
    policies = load_policies(session)
    for conv in rows:
        expires, nudge = deadlines(
            policy_for(conv, policies, defaults),
            conv.last_activity_at,
            nudged_at=conv.nudge_sent_at,
        )
        session.execute(
            update(Conversation)
            .where(
                Conversation.id == conv.id, Conversation.last_activity_at == conv.last_activity_at
            )
            .values(expires_at=expires, nudge_due_at=nudge)
            .execution_options(synchronize_session=False)
        )
    return RecomputeProgress(len(rows), rows[-1].id if rows else None)


RECOMPUTE_BATCH = 1000


def recompute_all(
    engine: Engine,
    scope: Scope,
    *,
    defaults: Mapping[str, Policy],
    batch: int = RECOMPUTE_BATCH,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Recompute every open conversation ``scope`` governs, one transaction per batch;
    ``progress`` is told the running total after each batch. Returns the total."""
    after, total = None, 0
    while True:
        with transaction(engine) as session:
            step = recompute_batch(session, scope, after=after, batch=batch, defaults=defaults)
        total += step.processed
        if progress is not None and step.processed:
            progress(total)
        if step.last_id is None:
            return total
        after = step.last_id
