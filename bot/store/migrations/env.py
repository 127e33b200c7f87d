"""Alembic environment: runs on the connection that `bot.store.db.migrate` passes in."""

from alembic import context

from bot.store import chat_models, deletion_models, tool_models  # noqa: F401  (their tables join Base.metadata)
from bot.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
