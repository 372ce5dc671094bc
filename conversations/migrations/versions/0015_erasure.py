"""erasure: idempotency rows owned by what they created; tombstones of erased provider ids

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows from before have no owner: the purge sweep deletes them once they are a TTL old.
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("customer_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("conversation_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            "fk_idempotency_keys_customer_id_customers",
            "customers",
            ["customer_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_foreign_key(
            "fk_idempotency_keys_conversation_id_conversations",
            "conversations",
            ["conversation_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index("ix_idempotency_keys_customer_id", ["customer_id"])
        batch.create_index("ix_idempotency_keys_conversation_id", ["conversation_id"])
    op.create_table(
        "erased_provider_ids",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("erased_provider_ids")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_index("ix_idempotency_keys_conversation_id")
        batch.drop_index("ix_idempotency_keys_customer_id")
        batch.drop_constraint("fk_idempotency_keys_conversation_id_conversations", "foreignkey")
        batch.drop_constraint("fk_idempotency_keys_customer_id_customers", "foreignkey")
        batch.drop_column("conversation_id")
        batch.drop_column("customer_id")
