"""The inbox: Slack messages stored durably, once, before Slack gets its ack.

Unique keys deduplicate Slack's redeliveries; a per-author count in the database limits
how fast one person may ask, across processes. Also what the bot keeps of the threads and
DMs it is in (the channel in view beside them, whether a person was greeted).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import String, Table, and_, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.crypto import TokenCipher, UnreadableSecret
from bot.store.database import Database
from bot.store.models import Conversation, DmUser, InboxMessage

RATE_WINDOW_S = 60.0


class RecordStatus(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    OVER_RATE_LIMIT = "over_rate_limit"


@dataclass(frozen=True)
class Recorded:
    status: RecordStatus
    conversation_id: int


@dataclass(frozen=True)
class NewMessage:
    """A Slack message to be answered, as the listener hands it over."""

    team_id: str
    channel_id: str
    thread_ts: str
    ts: str
    user_id: str
    text: str
    surface: str = "channel"
    event_id: str | None = None
    files: str | None = None
    user_team_id: str | None = None
    """The user's own workspace: another organisation's in a Slack Connect channel."""
    enterprise_id: str | None = None
    """The receiving workspace's Enterprise Grid organisation, if any."""
    action_token: str | None = None
    """Slack's `action_token` (AI apps): lets workspace search act for this message."""


class Inbox:
    def __init__(
        self, database: Database, *, cipher: TokenCipher, engine: AsyncEngine | None = None
    ) -> None:
        """`engine` is intake's own (so an ack never queues behind answer work); by default
        the database's."""
        self._db = database
        self._engine = engine or database.engine
        self._cipher = cipher
        self._intake = _IntakeStatements.build(database.insert)

    async def record_message(self, message: NewMessage, *, per_minute: int = 0) -> Recorded:
        """Store a message durably, once; over `per_minute` messages from its author in the
        last minute (counted in the database, so across processes), it is stored refused.

        This runs inside Slack's ack, so it uses prebuilt Core statements on a plain
        connection: a third of the CPU the ORM spends building the same three statements.
        """
        now = time.time()
        async with self._engine.begin() as connection:
            await connection.execute(
                self._intake.add_conversation,
                {
                    "team_id": message.team_id,
                    "channel_id": message.channel_id,
                    "thread_ts": message.thread_ts,
                    "surface": message.surface,
                    "enterprise_id": message.enterprise_id,
                    "needs_attention": False,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            # Flag the row before inserting the message: a worker releasing the lease locks the
            # same row first, so it either sees this message or leaves the flag set.
            conversation_id = await connection.scalar(
                self._intake.flag_conversation,
                _thread_params(
                    message.team_id,
                    message.channel_id,
                    message.thread_ts,
                    now=now,
                    enterprise=message.enterprise_id,
                ),
            )
            inserted = await connection.scalar(
                self._intake.add_message,
                {
                    "conversation_id": conversation_id,
                    "team_id": message.team_id,
                    "channel_id": message.channel_id,
                    "ts": message.ts,
                    "event_id": message.event_id,
                    "user_id": message.user_id,
                    "text": message.text,
                    "files": message.files,
                    "received_at": now,
                    "action_token": (
                        None
                        if message.action_token is None
                        else self._cipher.encrypt(message.action_token)
                    ),
                    "user_team_id": message.user_team_id,
                },
            )
            if inserted is None:
                return Recorded(RecordStatus.DUPLICATE, conversation_id)
            if per_minute > 0 and await self._over_rate_limit(
                connection, message, per_minute=per_minute, now=now
            ):
                await connection.execute(
                    update(InboxMessage)
                    .where(InboxMessage.id == inserted)
                    .values(refused=True, action_token=None)  # never answered: not needed
                )
                return Recorded(RecordStatus.OVER_RATE_LIMIT, conversation_id)
            return Recorded(RecordStatus.NEW, conversation_id)

    async def _over_rate_limit(
        self, connection: Any, message: NewMessage, *, per_minute: int, now: float
    ) -> bool:
        if self._db.dialect == "postgresql":
            # One counter per user at a time, across processes.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"rate:{message.team_id}:{message.user_id}"},
            )
        recent = await connection.scalar(
            select(func.count())
            .select_from(InboxMessage)
            .where(
                InboxMessage.team_id == message.team_id,
                InboxMessage.user_id == message.user_id,
                InboxMessage.received_at > now - RATE_WINDOW_S,
                InboxMessage.refused.is_(False),
            )
        )
        return int(recent or 0) > per_minute

    async def is_known_thread(self, team_id: str, channel_id: str, thread_ts: str) -> bool:
        async with self._engine.connect() as connection:
            found = await connection.scalar(
                self._intake.find_conversation, _thread_params(team_id, channel_id, thread_ts)
            )
            return found is not None

    async def set_context_channel(
        self,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        context_channel_id: str | None,
        *,
        enterprise_id: str | None = None,
    ) -> None:
        """The channel in view beside an assistant thread; the thread's conversation is
        created here (with its workspace's organisation) when it is new."""
        now = time.time()
        async with self._engine.begin() as connection:
            await connection.execute(
                self._db.insert(Conversation)
                .values(
                    team_id=team_id,
                    channel_id=channel_id,
                    thread_ts=thread_ts,
                    surface="assistant",
                    context_channel_id=context_channel_id,
                    enterprise_id=enterprise_id,
                    needs_attention=False,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_update(
                    index_elements=["team_id", "channel_id", "thread_ts"],
                    set_={
                        "context_channel_id": context_channel_id,
                        "updated_at": now,
                        "enterprise_id": func.coalesce(Conversation.enterprise_id, enterprise_id),
                    },
                )
            )

    async def greet_once(self, team_id: str, user_id: str) -> bool:
        """True the first time it is asked for a person (in any process): greet them then."""
        now = time.time()
        async with self._engine.begin() as connection:
            await connection.execute(
                self._db.insert(DmUser)
                .values(team_id=team_id, user_id=user_id, updated_at=now)
                .on_conflict_do_nothing(index_elements=["team_id", "user_id"])
            )
            greeted = await connection.execute(
                update(DmUser)
                .where(
                    DmUser.team_id == team_id,
                    DmUser.user_id == user_id,
                    DmUser.greeted_at.is_(None),
                )
                .values(greeted_at=now)
            )
            return bool(greeted.rowcount)

    async def set_user_context(
        self, team_id: str, user_id: str, context_channel_id: str | None
    ) -> None:
        """The channel the person has in view beside their DM with the bot."""
        now = time.time()
        async with self._engine.begin() as connection:
            await connection.execute(
                self._db.insert(DmUser)
                .values(
                    team_id=team_id,
                    user_id=user_id,
                    context_channel_id=context_channel_id,
                    updated_at=now,
                )
                .on_conflict_do_update(
                    index_elements=["team_id", "user_id"],
                    set_={"context_channel_id": context_channel_id, "updated_at": now},
                )
            )

    async def user_context(self, team_id: str, user_id: str) -> str | None:
        async with self._engine.connect() as connection:
            found = await connection.scalar(
                select(DmUser.context_channel_id).where(
                    DmUser.team_id == team_id, DmUser.user_id == user_id
                )
            )
            return None if found is None else str(found)

    def action_token(self, message: InboxMessage) -> str | None:
        """The message's action token, decrypted; None when there is none or no configured
        key reads it (search then runs without it)."""
        if message.action_token is None:
            return None
        try:
            return self._cipher.decrypt(message.action_token)
        except UnreadableSecret:
            return None


@dataclass(frozen=True)
class _IntakeStatements:
    """The statements of the ack path, built once; values are bound at execution."""

    add_conversation: Any
    flag_conversation: Any
    add_message: Any
    find_conversation: Any

    @classmethod
    def build(cls, insert: Any) -> _IntakeStatements:
        conversations = cast(Table, Conversation.__table__)
        messages = cast(Table, InboxMessage.__table__)
        same_thread = and_(
            conversations.c.team_id == bindparam("thread_team"),
            conversations.c.channel_id == bindparam("thread_channel"),
            conversations.c.thread_ts == bindparam("thread_ts_"),
        )
        return cls(
            add_conversation=insert(conversations).on_conflict_do_nothing(
                index_elements=["team_id", "channel_id", "thread_ts"]
            ),
            flag_conversation=update(conversations)
            .where(same_thread)
            .values(
                needs_attention=True,
                updated_at=bindparam("now"),
                # A thread stored before its organisation was known (an older version)
                # learns it from the next message.
                enterprise_id=func.coalesce(
                    conversations.c.enterprise_id, bindparam("enterprise", type_=String)
                ),
            )
            .returning(conversations.c.id),
            add_message=insert(messages)
            .on_conflict_do_nothing(index_elements=["team_id", "channel_id", "ts"])
            .returning(messages.c.id),
            find_conversation=select(conversations.c.id).where(same_thread),
        )


def _thread_params(team_id: str, channel_id: str, thread_ts: str, **more: Any) -> dict[str, Any]:
    return {"thread_team": team_id, "thread_channel": channel_id, "thread_ts_": thread_ts, **more}
