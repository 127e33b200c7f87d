"""The chat backend's own thread store: Chat Completions keeps no state, so the bot does.

A thread is a `chat_…` id the backend made; its messages are numbered (`seq`) in the order
the model sees them. A turn stores its user message when it starts and its answer when the
model finishes; `turn_key` makes both idempotent (one user message and one answer a turn).
"""

from __future__ import annotations

from sqlalchemy import Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.models import Base


class ChatMessage(Base):
    """One message of a chat thread: a turn's question (role user) or its answer (assistant).

    `images` (user messages only) holds the turn's images as a JSON list of data URLs, so a
    turn asked again after a crash sends them again; `model`, `instructions` and
    `mcp_servers` are the turn's per-channel options, for the same reason. Only the newest
    question's images are sent (a model without vision would otherwise refuse every later
    turn), so the column is loaded only for it. `tokens` estimates the text alone. `outcome`
    marks an answer cut short ("incomplete") apart from a finished one ("completed").
    """

    __tablename__ = "chat_messages"
    __table_args__ = (
        UniqueConstraint("thread_id", "turn_key", "role", name="uq_chat_turn_role"),
        UniqueConstraint("thread_id", "seq", name="uq_chat_seq"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    turn_key: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)
    images: Mapped[str | None] = mapped_column(Text, deferred=True)
    model: Mapped[str | None] = mapped_column(String(128))
    instructions: Mapped[str | None] = mapped_column(Text)
    mcp_servers: Mapped[str | None] = mapped_column(Text)
    """The turn's MCP servers (a JSON list of labels); None: all configured."""
    outcome: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)


class ChatSummary(Base):
    """A short summary, made by the model, of a thread's messages up to `up_to_seq`: what
    stands in for the older turns that no longer fit in the model's window."""

    __tablename__ = "chat_summaries"

    thread_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    up_to_seq: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
