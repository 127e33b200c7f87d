"""The tables of the admin part: channel settings, their audit log, turn usage.

On the same `Base` as `bot/store/models.py`, so one metadata knows every table.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.models import Base


class ChannelSetting(Base):
    """One channel's own settings; a missing row, or a None field, means "the default"."""

    __tablename__ = "channel_settings"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", name="uq_channel_settings"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    instructions: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(128))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    budget_amount: Mapped[float | None] = mapped_column(Float)
    budget_unit: Mapped[str | None] = mapped_column(String(8))
    budget_period: Mapped[str | None] = mapped_column(String(8))
    mcp_servers: Mapped[str | None] = mapped_column(Text)
    """The MCP servers (labels) the channel may use, as a JSON list; None: all configured."""
    updated_by: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[float] = mapped_column(Float)


class SettingsChange(Base):
    """Who changed which channel setting, from what to what, and when."""

    __tablename__ = "settings_changes"
    __table_args__ = (Index("ix_settings_changes_at", "team_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    field: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


class TurnUsage(Base):
    """The tokens one turn used, as the API reported them, and their estimated cost.

    `turn_id` is unique (recording is idempotent) but not a foreign key: usage outlives the
    conversations that retention deletes, so the month's figures stay right.
    """

    __tablename__ = "turn_usage"
    __table_args__ = (
        UniqueConstraint("turn_id", name="uq_turn_usage_turn"),
        Index("ix_turn_usage_channel", "team_id", "channel_id", "at"),
        Index("ix_turn_usage_user", "team_id", "user_id", "at"),
        Index("ix_turn_usage_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn_id: Mapped[int] = mapped_column(Integer)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)
