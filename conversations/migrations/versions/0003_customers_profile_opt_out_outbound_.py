"""customers profile, opt-out, outbound conversations, idempotency keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner", "key", name="uq_idempotency_keys_owner_key"),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "customer_merges",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("into_customer_id", sa.Uuid(), nullable=False),
        sa.Column("merged_customer_id", sa.Uuid(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["into_customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("customer_merges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_merges_into_customer_id"), ["into_customer_id"], unique=False
        )

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("wants_turn", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("context", sa.JSON(), nullable=False, server_default="{}"))

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("attributes", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.create_unique_constraint("uq_customers_external_id", ["external_id"])

    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=True))

    op.create_index("ix_conversations_status_finished", "conversations", ["status", "finished_at"])
    op.create_index("ix_memory_entries_created", "memory_entries", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_memory_entries_created", table_name="memory_entries")
    op.drop_index("ix_conversations_status_finished", table_name="conversations")
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_column("opted_out_at")

    with op.batch_alter_table("customers", schema=None) as batch_op:
        # WARNING: constraint name is None; this directive will fail as
        # rendered.  Add a name, or use a naming convention; see
        # https://alembic.sqlalchemy.org/en/latest/naming.html
        batch_op.drop_constraint("uq_customers_external_id", type_="unique")
        batch_op.drop_column("attributes")
        batch_op.drop_column("name")
        batch_op.drop_column("external_id")

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("context")
        batch_op.drop_column("wants_turn")

    with op.batch_alter_table("customer_merges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_merges_into_customer_id"))

    op.drop_table("customer_merges")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))

    op.drop_table("idempotency_keys")
