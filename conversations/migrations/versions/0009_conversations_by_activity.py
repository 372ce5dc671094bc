"""conversations by latest activity: the index the operators' paged list reads

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_conversations_updated_id", "conversations", ["updated_at", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_updated_id", table_name="conversations")
