"""conversations.lease_generation: a fencing token for every write that moves a turn forward;
inbox_messages.refused and an index for counting a user's recent messages (the per-user rate
limit, across processes)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch_op:
        batch_op.add_column(
            sa.Column("lease_generation", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("inbox_messages") as batch_op:
        batch_op.add_column(
            sa.Column("refused", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_inbox_user_recent", "inbox_messages", ["team_id", "user_id", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_inbox_user_recent", table_name="inbox_messages")
    with op.batch_alter_table("inbox_messages") as batch_op:
        batch_op.drop_column("refused")
    with op.batch_alter_table("conversations") as batch_op:
        batch_op.drop_column("lease_generation")
