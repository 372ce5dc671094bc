"""pending-messages index in arrival order

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

WHERE = sa.text("inbound_state = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_messages_pending", table_name="messages")
    op.create_index(
        "ix_messages_pending",
        "messages",
        ["conversation_id", "id"],
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_pending", table_name="messages")
    op.create_index(
        "ix_messages_pending",
        "messages",
        ["conversation_id"],
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )
