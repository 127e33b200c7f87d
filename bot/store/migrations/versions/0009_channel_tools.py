"""per-channel choice of MCP servers: channel_settings.mcp_servers, and the chat backend's
stored question keeps its turn's choice (chat_messages.mcp_servers), as it keeps the model

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channel_settings") as batch_op:
        batch_op.add_column(sa.Column("mcp_servers", sa.Text()))
    with op.batch_alter_table("chat_messages") as batch_op:
        batch_op.add_column(sa.Column("mcp_servers", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("chat_messages") as batch_op:
        batch_op.drop_column("mcp_servers")
    with op.batch_alter_table("channel_settings") as batch_op:
        batch_op.drop_column("mcp_servers")
