"""Conversations at OpenAI still to delete (0011): recorded before the bot's own rows that
name them are deleted, so a failed delete is retried (`python -m bot purge`), never lost."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.models import Base


class RemoteDeletion(Base):
    __tablename__ = "remote_deletions"
    __table_args__ = (UniqueConstraint("backend", "remote_id", name="uq_remote_deletion"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backend: Mapped[str] = mapped_column(String(32))
    """Which backend made it: `threads` (a thread), `responses` (a Conversation), `chat`."""
    remote_id: Mapped[str] = mapped_column(String(128))
    team_id: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
