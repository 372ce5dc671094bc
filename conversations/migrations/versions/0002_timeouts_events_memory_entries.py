"""timeouts, events, memory entries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timeout_policies",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("inactivity_seconds", sa.Integer(), nullable=True),
        sa.Column("nudge_before_seconds", sa.Integer(), nullable=True),
        sa.Column("nudge_message", sa.Text(), nullable=True),
        sa.Column("closing_message", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("service", "channel", name="uq_timeout_policies_scope"),
    )
    op.create_table(
        "timeout_policy_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("old", sa.JSON(), nullable=True),
        sa.Column("new", sa.JSON(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("timeout_policy_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_timeout_policy_changes_changed_at"), ["changed_at"], unique=False
        )

    op.create_table(
        "conversation_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("conversation_id", "kind", name="uq_conversation_events_kind"),
    )
    with op.batch_alter_table("conversation_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_conversation_events_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "memory_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("memory_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_memory_entries_customer_created", ["customer_id", "created_at"], unique=False
        )

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("nudge_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("nudge_sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "timeout_override_set", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch_op.add_column(sa.Column("timeout_override_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("summary", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("wrapped_up_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_conversations_status_expires", ["status", "expires_at"], unique=False
        )
        batch_op.create_index(
            "ix_conversations_status_nudge", ["status", "nudge_due_at"], unique=False
        )
        batch_op.create_index(
            "ix_conversations_wrapup_pending",
            ["finished_at"],
            unique=False,
            postgresql_where=sa.text("status = 'finished' AND wrapped_up_at IS NULL"),
            sqlite_where=sa.text("status = 'finished' AND wrapped_up_at IS NULL"),
        )

    # Conversations that finished before wrap-up existed are not wrapped up retroactively.
    # Open ones get a deadline on their next activity, or at once with
    # `dormouse timeouts recompute`.
    op.execute("UPDATE conversations SET wrapped_up_at = finished_at WHERE status = 'finished'")


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_conversations_wrapup_pending",
            postgresql_where=sa.text("status = 'finished' AND wrapped_up_at IS NULL"),
            sqlite_where=sa.text("status = 'finished' AND wrapped_up_at IS NULL"),
        )
        batch_op.drop_index("ix_conversations_status_nudge")
        batch_op.drop_index("ix_conversations_status_expires")
        batch_op.drop_column("wrapped_up_at")
        batch_op.drop_column("summary")
        batch_op.drop_column("timeout_override_seconds")
        batch_op.drop_column("timeout_override_set")
        batch_op.drop_column("nudge_sent_at")
        batch_op.drop_column("nudge_due_at")
        batch_op.drop_column("expires_at")

    with op.batch_alter_table("memory_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_memory_entries_customer_created")

    op.drop_table("memory_entries")
    with op.batch_alter_table("conversation_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversation_events_created_at"))

    op.drop_table("conversation_events")
    with op.batch_alter_table("timeout_policy_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timeout_policy_changes_changed_at"))

    op.drop_table("timeout_policy_changes")
    op.drop_table("timeout_policies")
