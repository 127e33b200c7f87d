"""Every read and write the bot makes, each one a short transaction.

The guarantees that keep several processes from answering twice live here, in the database:
unique keys deduplicate Slack messages, and a compare-and-set lease on the conversation row
lets exactly one process work on a conversation at a time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, Update, and_, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.store.models import Conversation, Feedback, InboxMessage, Turn

OPEN_TURN_STATUSES = ("queued", "running", "posting")


@dataclass(frozen=True)
class TurnWork:
    """A turn with the conversation it belongs to and the messages it answers."""

    conversation: Conversation
    turn: Turn
    messages: list[InboxMessage]


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
    #: The writer's own team, when it differs from `team_id` (a Slack Connect channel).
    user_team_id: str | None = None


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._intake = _IntakeStatements.build(self._insert)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    async def _write(self, statement: Update) -> bool:
        """One UPDATE in its own transaction on a plain connection; True if it hit a row.

        The ORM session adds about a third to the CPU of these hot, single-statement writes.
        """
        async with self.engine.begin() as connection:
            result = await connection.execute(statement)
            return bool(result.rowcount)

    # Slack side -------------------------------------------------------------------------

    async def record_message(self, message: NewMessage) -> int | None:
        """Store a message durably; the conversation id, or None if it was stored before.

        This runs inside Slack's ack, so it uses prebuilt Core statements on a plain
        connection: a third of the CPU the ORM spends building the same three statements.
        """
        now = time.time()
        async with self.engine.begin() as connection:
            await connection.execute(
                self._intake.add_conversation,
                {
                    "team_id": message.team_id,
                    "channel_id": message.channel_id,
                    "thread_ts": message.thread_ts,
                    "surface": message.surface,
                    "needs_attention": False,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            # Flag the row before inserting the message: a worker releasing the lease locks the
            # same row first, so it either sees this message or leaves the flag set.
            conversation_id = await connection.scalar(
                self._intake.flag_conversation,
                _thread_params(message.team_id, message.channel_id, message.thread_ts, now=now),
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
                },
            )
            return None if inserted is None else conversation_id

    async def is_known_thread(self, team_id: str, channel_id: str, thread_ts: str) -> bool:
        async with self.engine.connect() as connection:
            found = await connection.scalar(
                self._intake.find_conversation, _thread_params(team_id, channel_id, thread_ts)
            )
            return found is not None

    async def set_context_channel(
        self, team_id: str, channel_id: str, thread_ts: str, context_channel_id: str | None
    ) -> None:
        now = time.time()
        async with self._sessions.begin() as session:
            await session.execute(
                self._insert(Conversation)
                .values(
                    team_id=team_id,
                    channel_id=channel_id,
                    thread_ts=thread_ts,
                    surface="assistant",
                    context_channel_id=context_channel_id,
                    needs_attention=False,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_update(
                    index_elements=["team_id", "channel_id", "thread_ts"],
                    set_={"context_channel_id": context_channel_id, "updated_at": now},
                )
            )

    # Leases -----------------------------------------------------------------------------

    async def conversations_needing_work(self, *, limit: int) -> list[int]:
        now = time.time()
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Conversation.id)
                .where(Conversation.needs_attention.is_(True), _lease_free(now))
                .order_by(Conversation.updated_at)
                .limit(limit)
            )
            return list(rows)

    async def claim(self, conversation_id: int, *, owner: str, lease_s: float) -> bool:
        """Take the conversation's lease if nobody holds a live one (compare-and-set)."""
        now = time.time()
        return await self._write(
            update(Conversation)
            .where(Conversation.id == conversation_id, _lease_free(now))
            .values(lease_owner=owner, lease_until=now + lease_s)
        )

    async def renew(self, conversation_id: int, *, owner: str, lease_s: float) -> bool:
        return await self._write(
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.lease_owner == owner)
            .values(lease_until=time.time() + lease_s)
        )

    async def defer(self, conversation_id: int, *, owner: str, delay_s: float) -> None:
        """Give the lease up but keep the work flagged, to be retried after `delay_s`."""
        await self._write(
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.lease_owner == owner)
            .values(lease_owner=None, lease_until=time.time() + delay_s, needs_attention=True)
        )

    async def release_if_idle(self, conversation_id: int, *, owner: str) -> bool:
        """Give the lease up if nothing is left to do; False when new work arrived meanwhile."""
        async with self._sessions.begin() as session:
            locked = await session.scalar(
                select(Conversation.id)
                .where(Conversation.id == conversation_id, Conversation.lease_owner == owner)
                .with_for_update()
            )
            if locked is None:
                return True
            pending = await session.scalar(
                select(
                    exists().where(
                        InboxMessage.conversation_id == conversation_id,
                        InboxMessage.turn_id.is_(None),
                    )
                    | exists().where(
                        Turn.conversation_id == conversation_id,
                        Turn.status.in_(OPEN_TURN_STATUSES),
                    )
                )
            )
            if pending:
                return False
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(lease_owner=None, lease_until=None, needs_attention=False)
            )
            return True

    async def release_all(self, *, owner: str) -> None:
        """On shutdown: hand every held conversation to whichever process scans next."""
        await self._write(
            update(Conversation)
            .where(Conversation.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )

    # Turns ------------------------------------------------------------------------------

    async def next_turn(self, conversation_id: int, *, deadline_s: float) -> TurnWork | None:
        """The unfinished turn to resume, else a new turn for all waiting messages, else None.

        One transaction returns everything a turn needs, and counts the attempt.
        """
        async with self._sessions.begin() as session:
            turn = await session.scalar(
                select(Turn)
                .where(Turn.conversation_id == conversation_id, Turn.status.in_(OPEN_TURN_STATUSES))
                .order_by(Turn.id)
                .limit(1)
            )
            if turn is None:
                turn = await self._open_turn(session, conversation_id, deadline_s=deadline_s)
                if turn is None:
                    return None
            turn.attempts += 1
            conversation = await session.get_one(Conversation, conversation_id)
            messages = await session.scalars(
                select(InboxMessage)
                .where(InboxMessage.turn_id == turn.id)
                .order_by(InboxMessage.ts)
            )
            return TurnWork(conversation=conversation, turn=turn, messages=list(messages))

    async def _open_turn(
        self, session: AsyncSession, conversation_id: int, *, deadline_s: float
    ) -> Turn | None:
        waiting = (
            await session.scalars(
                select(InboxMessage.id).where(
                    InboxMessage.conversation_id == conversation_id,
                    InboxMessage.turn_id.is_(None),
                )
            )
        ).all()
        if not waiting:
            return None
        now = time.time()
        turn = Turn(
            conversation_id=conversation_id,
            status="queued",
            chunks_posted=0,
            attempts=0,
            files_posted=False,
            created_at=now,
            deadline_at=now + deadline_s,
        )
        session.add(turn)
        await session.flush()
        await session.execute(
            update(InboxMessage).where(InboxMessage.id.in_(waiting)).values(turn_id=turn.id)
        )
        return turn

    async def backends_before(self, conversation_id: int, *, turn_id: int) -> set[str]:
        """The backends that earlier turns of the conversation started runs on."""
        async with self.engine.connect() as connection:
            rows = await connection.scalars(
                select(Turn.backend)
                .distinct()
                .where(
                    Turn.conversation_id == conversation_id,
                    Turn.id < turn_id,
                    Turn.backend.is_not(None),
                )
            )
            return {str(backend) for backend in rows}

    async def update_turn(self, turn_id: int, **values: Any) -> None:
        await self._write(update(Turn).where(Turn.id == turn_id).values(**values))

    async def set_remote_thread(
        self, conversation_id: int, *, backend: str, remote_id: str
    ) -> None:
        await self._write(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(backend=backend, remote_id=remote_id)
        )

    async def record_feedback(self, *, turn_id: int, user_id: str, value: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                self._insert(Feedback)
                .values(turn_id=turn_id, user_id=user_id, value=value, created_at=time.time())
                .on_conflict_do_update(
                    index_elements=["turn_id", "user_id"],
                    set_={"value": value, "created_at": time.time()},
                )
            )

    async def feedback_counts(self) -> dict[str, int]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(Feedback.value, func.count()).group_by(Feedback.value)
            )
            return {value: count for value, count in rows.tuples()}

    async def delete_conversations_before(self, cutoff: float) -> Sequence[tuple[str, str]]:
        """Delete idle conversations last active before `cutoff`; their (backend, remote id)."""
        async with self._sessions.begin() as session:
            old = and_(
                Conversation.updated_at < cutoff,
                Conversation.needs_attention.is_(False),
                Conversation.lease_owner.is_(None),
            )
            remote = (
                await session.execute(
                    select(Conversation.backend, Conversation.remote_id).where(
                        old, Conversation.remote_id.is_not(None)
                    )
                )
            ).tuples()
            found = [(str(backend), str(remote_id)) for backend, remote_id in remote]
            ids = select(Conversation.id).where(old).scalar_subquery()
            await session.execute(delete(InboxMessage).where(InboxMessage.conversation_id.in_(ids)))
            await session.execute(
                delete(Feedback).where(
                    Feedback.turn_id.in_(select(Turn.id).where(Turn.conversation_id.in_(ids)))
                )
            )
            await session.execute(delete(Turn).where(Turn.conversation_id.in_(ids)))
            await session.execute(delete(Conversation).where(old))
            return found


def _lease_free(now: float) -> Any:
    return or_(Conversation.lease_until.is_(None), Conversation.lease_until < now)


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
            .values(needs_attention=True, updated_at=bindparam("now"))
            .returning(conversations.c.id),
            add_message=insert(messages)
            .on_conflict_do_nothing(index_elements=["team_id", "channel_id", "ts"])
            .returning(messages.c.id),
            find_conversation=select(conversations.c.id).where(same_thread),
        )


def _thread_params(team_id: str, channel_id: str, thread_ts: str, **more: Any) -> dict[str, Any]:
    return {"thread_team": team_id, "thread_channel": channel_id, "thread_ts_": thread_ts, **more}
