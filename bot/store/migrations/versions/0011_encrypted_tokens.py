"""tokens are stored encrypted: the installation tables' token columns become TEXT (a Fernet
token is longer than the 200 characters they allowed), and the action tokens of finished
turns, no longer needed, are cleared; `remote_deletions` records conversations at OpenAI
still to delete (an uninstall's, when OpenAI could not be reached)

The tokens themselves are encrypted by the bot at start (bot/store/secrets_at_rest.py): a
migration does not have the key.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TOKEN_COLUMNS = {
    "slack_bots": ("bot_token", "bot_refresh_token"),
    "slack_installations": ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token"),
}


def upgrade() -> None:
    op.create_table(
        "remote_deletions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("remote_id", sa.String(128), nullable=False),
        sa.Column("team_id", sa.String(32)),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("backend", "remote_id", name="uq_remote_deletion"),
    )
    # SQLite does not enforce VARCHAR lengths: no table rebuild there.
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in _TOKEN_COLUMNS.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(200))
    op.execute(
        "UPDATE inbox_messages SET action_token = NULL WHERE action_token IS NOT NULL "
        "AND turn_id IN (SELECT id FROM turns WHERE status = 'done')"
    )


def downgrade() -> None:
    op.drop_table("remote_deletions")
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in _TOKEN_COLUMNS.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.String(200), existing_type=sa.Text())
