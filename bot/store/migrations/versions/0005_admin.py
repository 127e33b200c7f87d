"""per-channel settings and their audit log, turn usage, and a reason for 👎 feedback

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_settings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("instructions", sa.Text()),
        sa.Column("model", sa.String(128)),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("budget_amount", sa.Float()),
        sa.Column("budget_unit", sa.String(8)),
        sa.Column("budget_period", sa.String(8)),
        sa.Column("updated_by", sa.String(32)),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("team_id", "channel_id", name="uq_channel_settings"),
    )
    op.create_table(
        "settings_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("field", sa.String(32), nullable=False),
        sa.Column("old_value", sa.Text()),
        sa.Column("new_value", sa.Text()),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_settings_changes_at", "settings_changes", ["team_id", "at"])
    op.create_table(
        "turn_usage",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("turn_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float()),
        sa.Column("at", sa.Float(), nullable=False),
        sa.UniqueConstraint("turn_id", name="uq_turn_usage_turn"),
    )
    op.create_index("ix_turn_usage_channel", "turn_usage", ["team_id", "channel_id", "at"])
    op.create_index("ix_turn_usage_user", "turn_usage", ["team_id", "user_id", "at"])
    op.create_index("ix_turn_usage_at", "turn_usage", ["at"])
    with op.batch_alter_table("feedback") as batch_op:
        batch_op.add_column(sa.Column("reason", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch_op:
        batch_op.drop_column("reason")
    op.drop_table("turn_usage")
    op.drop_table("settings_changes")
    op.drop_table("channel_settings")
