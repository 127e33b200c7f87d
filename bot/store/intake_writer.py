"""Group commit for intake: one writer stores every message waiting for its ack in one
transaction (a batch per commit), and each message is acked once its batch is durable.

Storing one message takes five round trips to the database (BEGIN, three statements,
COMMIT) and a flush to disk. When the event loop is busy answering, every round trip also
waits for a loop turn, so messages stored one by one on one connection queue for each
other. A batch takes the same round trips whatever its size: the statements work on sets
(every thread of the batch, every message), and the disk is flushed once.

What a message gets is what storing it alone gives (`Recorded`): new, a duplicate (already
stored, or earlier in the same batch), or over its author's rate limit (counted as if the
batch's messages arrived one after another, in order).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, func, select, text, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.inbox_types import NewMessage, Recorded, RecordStatus
from bot.store.models import Conversation, InboxMessage
from bot.store.sqlite_thread import SqliteThread

log = logging.getLogger(__name__)

MAX_BATCH = 200
"""Messages per transaction at most (a burst beyond it waits for the next commit)."""
RATE_WINDOW_S = 60.0

_CONVERSATIONS = cast(Table, Conversation.__table__)
_MESSAGES = cast(Table, InboxMessage.__table__)

Thread = tuple[str, str, str]
"""(team, channel, thread_ts): a conversation's natural key."""
MessageKey = tuple[str, str, str]
"""(team, channel, ts): a message's natural key (Slack's redeliveries share it)."""


@dataclass
class _Waiting:
    message: NewMessage
    per_minute: int
    done: asyncio.Future[Recorded] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class IntakeWriter:
    """The one writer of a process's intake (`record` is what an ack awaits)."""

    def __init__(
        self, engine: AsyncEngine, *, insert: Callable[[Any], Any], encrypt: Callable[[str], str]
    ) -> None:
        self._engine = engine
        self._insert = insert
        self._encrypt = encrypt
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self._thread = SqliteThread.beside(engine, "sqlite-intake-writer")
        """On a SQLite file, each batch's transaction runs in one call to a thread of its own
        (bot.store.sqlite_thread); elsewhere on the event loop, on `engine`."""

    async def record(self, message: NewMessage, *, per_minute: int = 0) -> Recorded:
        """Once the message is durably stored (with the batch it joined), its outcome."""
        waiting = _Waiting(message, per_minute)
        self._waiting.append(waiting)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return await waiting.done

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                outcomes = await self._store(batch)
            except BaseException as exc:
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for waiting, outcome in zip(batch, outcomes, strict=True):
                if not waiting.done.done():
                    waiting.done.set_result(outcome)

    async def _store(self, batch: Sequence[_Waiting]) -> list[Recorded]:
        if self._thread is not None:
            return await self._thread.run(self._store_in, batch)
        async with self._engine.begin() as connection:
            return await connection.run_sync(self._store_in, batch)

    def _store_in(self, connection: Connection, batch: Sequence[_Waiting]) -> list[Recorded]:
        """The batch's transaction (`connection` has begun it; its end commits it)."""
        now = time.time()
        messages = [waiting.message for waiting in batch]
        conversations = self._flag_threads(connection, messages, now)
        inserted = self._add_messages(connection, messages, conversations, now)
        new = {position: row_id for position, row_id in inserted.values()}
        limited = [(i, w) for i, w in enumerate(batch) if i in new and w.per_minute > 0]
        over = _over_rate_limit(connection, limited, now=now) if limited else []
        if over:
            connection.execute(
                update(_MESSAGES)
                .where(_MESSAGES.c.id.in_([new[i] for i in over]))
                .values(refused=True, action_token=None)  # never answered: not needed
            )
        return [
            Recorded(_status(i, new, over), conversations[thread(m)])
            for i, m in enumerate(messages)
        ]

    def _flag_threads(
        self, connection: Connection, messages: Sequence[NewMessage], now: float
    ) -> dict[Thread, int]:
        """Every thread of the batch exists and is flagged for the dispatcher; their ids.

        One statement: threads are created, or locked and flagged, in one order (sorted by
        key), so two processes storing batches that share threads wait for each other, never
        deadlock. Flagging comes before the messages are inserted: a worker releasing the
        lease locks the same row first, so it either sees the new messages or leaves the flag
        set. A thread stored before its organisation was known (an older version) learns it
        from the next message.
        """
        first_of: dict[Thread, NewMessage] = {}
        for message in messages:
            first_of.setdefault(thread(message), message)
        c = _CONVERSATIONS.c
        upsert = self._insert(_CONVERSATIONS)
        rows = connection.execute(
            upsert.on_conflict_do_update(
                index_elements=["team_id", "channel_id", "thread_ts"],
                set_={
                    "needs_attention": True,
                    "updated_at": upsert.excluded.updated_at,
                    "enterprise_id": func.coalesce(c.enterprise_id, upsert.excluded.enterprise_id),
                },
            ).returning(c.id, c.team_id, c.channel_id, c.thread_ts),
            [
                {
                    "team_id": t[0],
                    "channel_id": t[1],
                    "thread_ts": t[2],
                    "surface": first_of[t].surface,
                    "enterprise_id": first_of[t].enterprise_id,
                    "needs_attention": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for t in sorted(first_of)
            ],
        )
        return {(r.team_id, r.channel_id, r.thread_ts): r.id for r in rows}

    def _add_messages(
        self,
        connection: Connection,
        messages: Sequence[NewMessage],
        conversations: dict[Thread, int],
        now: float,
    ) -> dict[MessageKey, tuple[int, int]]:
        """Insert the batch's messages not stored yet; for each one inserted, its position
        in the batch (the first with its key: later ones are duplicates) and its id."""
        first: dict[MessageKey, int] = {}
        for i, message in enumerate(messages):
            first.setdefault(key(message), i)
        m = _MESSAGES.c
        rows = connection.execute(
            self._insert(_MESSAGES)
            .on_conflict_do_nothing(index_elements=["team_id", "channel_id", "ts"])
            .returning(m.id, m.team_id, m.channel_id, m.ts),
            [self._message_row(messages[i], conversations, now) for _, i in sorted(first.items())],
        )
        return {
            (r.team_id, r.channel_id, r.ts): (first[(r.team_id, r.channel_id, r.ts)], r.id)
            for r in rows
        }

    def _message_row(
        self, message: NewMessage, conversations: dict[Thread, int], now: float
    ) -> dict[str, Any]:
        token = message.action_token
        return {
            "conversation_id": conversations[thread(message)],
            "team_id": message.team_id,
            "channel_id": message.channel_id,
            "ts": message.ts,
            "event_id": message.event_id,
            "user_id": message.user_id,
            "text": message.text,
            "files": message.files,
            "received_at": now,
            "action_token": None if token is None else self._encrypt(token),
            "user_team_id": message.user_team_id,
            "refused": False,
        }


def _status(position: int, new: dict[int, int], over: list[int]) -> RecordStatus:
    if position not in new:
        return RecordStatus.DUPLICATE
    return RecordStatus.OVER_RATE_LIMIT if position in over else RecordStatus.NEW


def _over_rate_limit(
    connection: Connection, limited: Sequence[tuple[int, _Waiting]], *, now: float
) -> list[int]:
    """The positions of the new messages over their author's limit: a message is over when
    its author's stored, unrefused messages of the last minute, counting the batch's
    earlier ones and itself, exceed the limit."""
    authors = sorted({(w.message.team_id, w.message.user_id) for _, w in limited})
    if connection.dialect.name == "postgresql":
        for team_id, user_id in authors:  # one counter per user at a time, across processes
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"rate:{team_id}:{user_id}"},
            )
    m = _MESSAGES.c
    counted = connection.execute(
        select(m.team_id, m.user_id, func.count())
        .where(
            tuple_(m.team_id, m.user_id).in_(authors),
            m.received_at > now - RATE_WINDOW_S,
            m.refused.is_(False),
        )
        .group_by(m.team_id, m.user_id)
    )
    recent = {(row[0], row[1]): int(row[2]) for row in counted}
    new_per_author: dict[tuple[str, str], int] = {}
    for _, waiting in limited:
        author = (waiting.message.team_id, waiting.message.user_id)
        new_per_author[author] = new_per_author.get(author, 0) + 1
    seen: dict[tuple[str, str], int] = {}
    over: list[int] = []
    for i, waiting in limited:
        author = (waiting.message.team_id, waiting.message.user_id)
        seen[author] = seen.get(author, 0) + 1
        before = recent.get(author, 0) - new_per_author[author]
        if before + seen[author] > waiting.per_minute:
            over.append(i)
    return over


def thread(message: NewMessage) -> Thread:
    return (message.team_id, message.channel_id, message.thread_ts)


def key(message: NewMessage) -> MessageKey:
    return (message.team_id, message.channel_id, message.ts)
