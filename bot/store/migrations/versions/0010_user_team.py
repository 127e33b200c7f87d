"""the writer's own team on each stored message (inbox_messages.user_team_id), so a turn
knows a Slack Connect user of another organisation, whom tool servers refuse unless their
`teams` name that organisation

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column is added in place (no table rebuild on SQLite): None means the
    # workspace's own team, which is what every earlier message is treated as.
    op.add_column("inbox_messages", sa.Column("user_team_id", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("inbox_messages") as batch_op:
        batch_op.drop_column("user_team_id")
