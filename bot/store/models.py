"""The tables: one row a Slack thread, a Slack message, an assistant turn.

Times are stored as Unix seconds (float) so SQLite and PostgreSQL compare them the same way.
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    """A Slack thread and the assistant thread (or Conversation) that mirrors it.

    `lease_owner`/`lease_until` say which bot process works on it; an expired lease (or one
    set without an owner, as a retry timer) lets any process take it.
    """

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("team_id", "channel_id", "thread_ts", name="uq_conversation_thread"),
        Index("ix_conversation_work", "needs_attention", "lease_until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str] = mapped_column(String(32))
    surface: Mapped[str] = mapped_column(String(16), default="channel")
    backend: Mapped[str | None] = mapped_column(String(16))
    remote_id: Mapped[str | None] = mapped_column(String(128))
    context_channel_id: Mapped[str | None] = mapped_column(String(32))
    enterprise_id: Mapped[str | None] = mapped_column(String(32))
    """The workspace's Enterprise Grid organisation, if any (0006): an org-wide install
    answers for every workspace of it."""
    needs_attention: Mapped[bool] = mapped_column(default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[float | None] = mapped_column(Float)
    lease_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class InboxMessage(Base):
    """A Slack message the bot must answer, stored before Slack gets its ack.

    Unique on (team, channel, ts): a redelivered event, or the `message` and `app_mention`
    events Slack sends for one message, are stored once.
    """

    __tablename__ = "inbox_messages"
    __table_args__ = (
        UniqueConstraint("team_id", "channel_id", "ts", name="uq_inbox_message"),
        Index("ix_inbox_pending", "conversation_id", "turn_id"),
        Index("ix_inbox_user_recent", "team_id", "user_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    files: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[float] = mapped_column(Float)
    turn_id: Mapped[int | None] = mapped_column(ForeignKey("turns.id", ondelete="SET NULL"))
    refused: Mapped[bool] = mapped_column(default=False, server_default="0")
    """Stored (so a redelivery stays a duplicate) but not answered: over the rate limit."""
    action_token: Mapped[str | None] = mapped_column(Text)
    """Slack's token for this message's Real-time Search calls (0007), if Slack sent one."""
    user_team_id: Mapped[str | None] = mapped_column(String(32))
    """The writer's own team (0010): another organisation's for a Slack Connect user, whom
    tool servers refuse unless they name that team. None: the workspace's own."""


class Turn(Base):
    """One assistant run (or background response) answering one or more inbox messages.

    status: queued → running (remote_run_id known) → posting (answer known) → done | failed.
    Each step is stored before the next begins, so a restarted process resumes where the
    last one stopped instead of asking or answering twice.
    """

    __tablename__ = "turns"
    __table_args__ = (Index("ix_turn_open", "conversation_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32), default="queued")  # 32 since 0007
    backend: Mapped[str | None] = mapped_column(String(16))
    remote_run_id: Mapped[str | None] = mapped_column(String(128))
    placeholder_ts: Mapped[str | None] = mapped_column(String(32))
    answer: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(32))
    chunks_posted: Mapped[int] = mapped_column(Integer, default=0)
    files_posted: Mapped[bool] = mapped_column(default=False)
    reply_ts: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    deadline_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    tool_state: Mapped[str | None] = mapped_column(Text)
    """The turn's tool state while it runs (bot.assistants.turn_tools.TurnTools.dump), since
    0012; cleared when it is done."""


class DmUser(Base):
    """A person's DM with the bot in the Agent messaging experience (0006): whether they
    were greeted, and the channel they last had in view (`app_context_changed`)."""

    __tablename__ = "dm_users"
    __table_args__ = (UniqueConstraint("team_id", "user_id", name="uq_dm_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    greeted_at: Mapped[float | None] = mapped_column(Float)
    context_channel_id: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[float] = mapped_column(Float)


class Feedback(Base):
    """A 👍/👎 click on an answer; one per user and answer, the latest click wins."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("turn_id", "user_id", name="uq_feedback_vote"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)  # what went wrong, from the 👎 form (0005)
