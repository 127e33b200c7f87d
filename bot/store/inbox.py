"""The inbox: Slack messages stored durably, once, before Slack gets its ack.

Unique keys deduplicate Slack's redeliveries; a per-author count in the database limits
how fast one person may ask, across processes. Also what the bot keeps of the threads and
DMs it is in (the channel in view beside them, whether a person was greeted).
"""

from __future__ import annotations

import time

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.crypto import TokenCipher, UnreadableSecret
from bot.store.ack_reads import AckReads
from bot.store.database import Database
from bot.store.inbox_types import NewMessage as NewMessage
from bot.store.inbox_types import Recorded as Recorded
from bot.store.inbox_types import RecordStatus as RecordStatus
from bot.store.intake_writer import IntakeWriter
from bot.store.models import Conversation, DmUser, InboxMessage


class Inbox:
    def __init__(
        self, database: Database, *, cipher: TokenCipher, engine: AsyncEngine | None = None
    ) -> None:
        """`engine` is intake's own (so an ack never queues behind answer work); by default
        the database's."""
        self._db = database
        self._engine = engine or database.engine
        self.engine = self._engine
        """Where messages are stored: intake's own engine when it has one."""
        self._reads = AckReads(self._engine)
        self._cipher = cipher
        self._find_conversation = select(Conversation.id).where(
            Conversation.team_id == bindparam("thread_team"),
            Conversation.channel_id == bindparam("thread_channel"),
            Conversation.thread_ts == bindparam("thread_ts_"),
        )
        self._writer = IntakeWriter(self._engine, insert=database.insert, encrypt=cipher.encrypt)

    async def record_message(self, message: NewMessage, *, per_minute: int = 0) -> Recorded:
        """Store a message durably, once; over `per_minute` messages from its author in the
        last minute (counted in the database, so across processes), it is stored refused.

        This runs inside Slack's ack: the message joins the batch intake's one writer
        stores next (bot.store.intake_writer), and this returns once that batch is
        committed.
        """
        return await self._writer.record(message, per_minute=per_minute)

    async def is_known_thread(self, team_id: str, channel_id: str, thread_ts: str) -> bool:
        found = await self._reads.first(
            self._find_conversation,
            {"thread_team": team_id, "thread_channel": channel_id, "thread_ts_": thread_ts},
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
        found = await self._reads.first(
            select(DmUser.context_channel_id).where(
                DmUser.team_id == team_id, DmUser.user_id == user_id
            )
        )
        return None if found is None or found[0] is None else str(found[0])

    def action_token(self, message: InboxMessage) -> str | None:
        """The message's action token, decrypted; None when there is none or no configured
        key reads it (search then runs without it)."""
        if message.action_token is None:
            return None
        try:
            return self._cipher.decrypt(message.action_token)
        except UnreadableSecret:
            return None
