"""a turn's tool state is stored with the turn (turns.tool_state, one JSON document: the
calls it made, the tool servers it went without, outputs found before it paused for an
approval), so a restarted process carries its tool calls on where they were

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column is added in place (no table rebuild on SQLite): None is a turn whose
    # tools have done nothing yet, which is what every earlier turn is treated as.
    op.add_column("turns", sa.Column("tool_state", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch_op:
        batch_op.drop_column("tool_state")
