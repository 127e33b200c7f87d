"""openai_webhook_events: OpenAI webhook ids received, to act on each event once

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "openai_webhook_events",
        sa.Column("webhook_id", sa.String(128), primary_key=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(128), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
    )
    op.create_index(
        "ix_openai_webhook_events_received_at", "openai_webhook_events", ["received_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_openai_webhook_events_received_at", table_name="openai_webhook_events")
    op.drop_table("openai_webhook_events")
