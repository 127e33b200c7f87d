"""tool calls waiting for approval, room for the "awaiting_approval" turn status, and Slack's
action token with each inbox message

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tool_approvals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "turn_id", sa.Integer(), sa.ForeignKey("turns.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "conversation_id",
            sa.Integer(),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("server", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("requester", sa.String(32), nullable=False),
        sa.Column("message_ts", sa.String(32)),
        sa.Column("decision", sa.String(8)),
        sa.Column("decided_by", sa.String(32)),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("decided_at", sa.Float()),
        sa.Column("resumed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("turn_id", "call_id", name="uq_tool_approval_call"),
    )
    op.create_index("ix_tool_approvals_turn", "tool_approvals", ["turn_id"])
    with op.batch_alter_table("inbox_messages") as batch:
        batch.add_column(sa.Column("action_token", sa.Text()))
    with op.batch_alter_table("turns") as batch:
        batch.alter_column("status", type_=sa.String(32), existing_type=sa.String(16))


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.alter_column("status", type_=sa.String(16), existing_type=sa.String(32))
    with op.batch_alter_table("inbox_messages") as batch:
        batch.drop_column("action_token")
    op.drop_index("ix_tool_approvals_turn", table_name="tool_approvals")
    op.drop_table("tool_approvals")
