"""Tool calls waiting for a person's Allow/Deny.

A row is written when a turn stops for approval, and keeps what the backend needs to carry
on (`state`), so the wait survives restarts. The click stores the decision.
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.models import Base


class ToolApproval(Base):
    __tablename__ = "tool_approvals"
    __table_args__ = (UniqueConstraint("turn_id", "call_id", name="uq_tool_approval_call"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(128))
    server: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(128))
    arguments: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, default="")
    requester: Mapped[str] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    decision: Mapped[str | None] = mapped_column(String(8))
    """None while waiting; "allow" or "deny"."""
    decided_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float)
    decided_at: Mapped[float | None] = mapped_column(Float)
    resumed: Mapped[bool] = mapped_column(default=False, server_default="0")
