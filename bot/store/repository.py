"""Every read and write the bot makes, each one a short transaction.

The guarantees that keep several processes from answering twice live here, in the database:
unique keys deduplicate Slack messages, and a compare-and-set lease on the conversation row
lets exactly one process work on a conversation at a time.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    String,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.crypto import TokenCipher, UnreadableSecret
from bot.remote_deletions import record_remote
from bot.store.models import Conversation, DmUser, Feedback, InboxMessage, Turn
from bot.turns.states import OPEN_STATUSES, TurnStatus

RATE_WINDOW_S = 60.0
CLAIM_LOCK_WAIT = "500ms"


class LeaseLost(Exception):
    """This process no longer holds the conversation's lease: another one continues it."""


@dataclass
class Lease:
    """A conversation held by this process, with its fencing token.

    `generation` grows with every claim, so a write made under an older claim (a process that
    was paused past its lease and woke up) matches no row and fails instead of undoing the
    new holder's work. `valid_until` (monotonic) is how long the last renewal lets this
    process act without asking the database: past it, the lease is renewed (and so proved
    still ours) before anything else is sent to Slack.
    """

    conversation_id: int
    owner: str
    generation: int
    lease_s: float
    valid_until: float

    @property
    def lapsed(self) -> bool:
        return time.monotonic() >= self.valid_until


class RecordStatus(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    OVER_RATE_LIMIT = "over_rate_limit"


@dataclass(frozen=True)
class Recorded:
    status: RecordStatus
    conversation_id: int


@dataclass(frozen=True)
class TurnWork:
    """A turn with the conversation it belongs to and the messages it answers."""

    conversation: Conversation
    turn: Turn
    messages: list[InboxMessage]
    lease: Lease


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


class Store:
    def __init__(self, engine: AsyncEngine, *, cipher: TokenCipher | None = None) -> None:
        """`cipher` encrypts action tokens at rest; without one, a key of this process
        alone (what it stores only it can read)."""
        self.engine = engine
        self._cipher = cipher or TokenCipher.ephemeral()
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

    async def record_message(self, message: NewMessage, *, per_minute: int = 0) -> Recorded:
        """Store a message durably, once; over `per_minute` messages from its author in the
        last minute (counted in the database, so across processes), it is stored refused.

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
        if self.dialect == "postgresql":
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
        async with self.engine.connect() as connection:
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
        async with self._sessions.begin() as session:
            await session.execute(
                self._insert(Conversation)
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

    # The agent view's DMs -----------------------------------------------------------------

    async def greet_once(self, team_id: str, user_id: str) -> bool:
        """True the first time it is asked for a person (in any process): greet them then."""
        now = time.time()
        async with self.engine.begin() as connection:
            await connection.execute(
                self._insert(DmUser)
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
        async with self.engine.begin() as connection:
            await connection.execute(
                self._insert(DmUser)
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
        async with self.engine.connect() as connection:
            found = await connection.scalar(
                select(DmUser.context_channel_id).where(
                    DmUser.team_id == team_id, DmUser.user_id == user_id
                )
            )
            return None if found is None else str(found)

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

    async def claim(self, conversation_id: int, *, owner: str, lease_s: float) -> Lease | None:
        """Take the conversation's lease if nobody holds a live one (compare-and-set).

        On PostgreSQL the claim waits at most `CLAIM_LOCK_WAIT` for the row: long enough for
        an intake transaction storing a message in the same conversation (so that message is
        not left for the next scan), short enough that a process frozen mid-transaction never
        stalls this one's dispatcher.
        """
        now = time.time()
        started = time.monotonic()
        claim = (
            update(Conversation)
            .where(Conversation.id == conversation_id, _lease_free(now))
            .values(
                lease_owner=owner,
                lease_until=now + lease_s,
                lease_generation=Conversation.lease_generation + 1,
            )
            .returning(Conversation.lease_generation)
        )
        try:
            async with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    await connection.execute(text(f"SET LOCAL lock_timeout = '{CLAIM_LOCK_WAIT}'"))
                generation = await connection.scalar(claim)
        except DBAPIError as exc:
            if "lock timeout" not in str(exc.orig).lower():
                raise
            return None
        if generation is None:
            return None
        return Lease(conversation_id, owner, int(generation), lease_s, started + lease_s)

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease if it is still this process's (no other process claimed it)."""
        started = time.monotonic()
        renewed = await self._write(
            update(Conversation).where(_held(lease)).values(lease_until=time.time() + lease.lease_s)
        )
        if renewed:
            lease.valid_until = started + lease.lease_s
        return renewed

    async def ensure_held(self, lease: Lease) -> None:
        """Before an action another process must never repeat: a lease that may have lapsed
        (this process was paused, or its loop ran late) is renewed first, or `LeaseLost`."""
        if lease.lapsed and not await self.renew(lease):
            raise LeaseLost(f"conversation {lease.conversation_id}: taken over")

    async def defer(self, lease: Lease, *, delay_s: float) -> None:
        """Give the lease up but keep the work flagged, to be retried after `delay_s`."""
        await self._write(
            update(Conversation)
            .where(_held(lease))
            .values(lease_owner=None, lease_until=time.time() + delay_s, needs_attention=True)
        )

    async def release_if_idle(self, lease: Lease) -> bool:
        """Give the lease up if nothing is left to do; False when new work arrived meanwhile."""
        conversation_id = lease.conversation_id
        async with self._sessions.begin() as session:
            locked = await session.scalar(
                select(Conversation.id).where(_held(lease)).with_for_update()
            )
            if locked is None:
                return True
            pending = await session.scalar(
                select(
                    (
                        exists().where(
                            InboxMessage.conversation_id == conversation_id,
                            InboxMessage.turn_id.is_(None),
                            InboxMessage.refused.is_(False),
                        )
                        & ~_awaiting_approval(conversation_id)
                    )
                    | exists().where(
                        Turn.conversation_id == conversation_id,
                        Turn.status.in_(OPEN_STATUSES),
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

    async def release_dead_leases(self, *, owner: str) -> int:
        """At start: the leases this process's predecessor held are dead, so free them now
        rather than after `LEASE_S`. On SQLite (one process by design) every lease is."""
        held: Any = Conversation.lease_owner.is_not(None)
        if self.dialect != "sqlite":
            held = Conversation.lease_owner == owner
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(Conversation).where(held).values(lease_owner=None, lease_until=None)
            )
            return int(result.rowcount or 0)

    # Turns ------------------------------------------------------------------------------

    async def next_turn(self, lease: Lease, *, deadline_s: float) -> TurnWork | None:
        """The unfinished turn to resume, else a new turn for all waiting messages, else None.

        One transaction returns everything a turn needs, and counts the attempt; it holds the
        conversation's row while it does, and only while the lease is still this process's.
        """
        conversation_id = lease.conversation_id
        async with self._sessions.begin() as session:
            held = await session.scalar(
                select(Conversation.id).where(_held(lease)).with_for_update()
            )
            if held is None:
                raise LeaseLost(f"conversation {conversation_id}: taken over")
            turn = await session.scalar(
                select(Turn)
                .where(Turn.conversation_id == conversation_id, Turn.status.in_(OPEN_STATUSES))
                .order_by(Turn.id)
                .limit(1)
            )
            if turn is None:
                if await session.scalar(select(_awaiting_approval(conversation_id))):
                    return None  # the thread waits for a click; its new messages wait too
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
            return TurnWork(
                conversation=conversation, turn=turn, messages=list(messages), lease=lease
            )

    async def _open_turn(
        self, session: AsyncSession, conversation_id: int, *, deadline_s: float
    ) -> Turn | None:
        waiting = (
            await session.scalars(
                select(InboxMessage.id).where(
                    InboxMessage.conversation_id == conversation_id,
                    InboxMessage.turn_id.is_(None),
                    InboxMessage.refused.is_(False),
                )
            )
        ).all()
        if not waiting:
            return None
        now = time.time()
        turn = Turn(
            conversation_id=conversation_id,
            status=TurnStatus.QUEUED,
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

    async def stored_thread(
        self, conversation_id: int, *, before_ts: str
    ) -> list[tuple[str, str, str, bool]]:
        """What the bot itself holds of a thread before `before_ts`, oldest first: the
        messages it was sent and the answers it posted, as (ts, author id, text, from the
        bot). Read instead of asking Slack, whose thread reads are rate-limited."""
        async with self.engine.connect() as connection:
            asked = await connection.execute(
                select(InboxMessage.ts, InboxMessage.user_id, InboxMessage.text).where(
                    InboxMessage.conversation_id == conversation_id,
                    InboxMessage.refused.is_(False),
                )
            )
            answered = await connection.execute(
                select(Turn.reply_ts, Turn.answer).where(
                    Turn.conversation_id == conversation_id,
                    Turn.reply_ts.is_not(None),
                    Turn.answer.is_not(None),
                )
            )
            found = [(str(ts), str(user), str(text), False) for ts, user, text in asked]
            found += [(str(ts), "", str(answer), True) for ts, answer in answered]
        return sorted(
            (row for row in found if float(row[0]) < float(before_ts)),
            key=lambda row: float(row[0]),
        )

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

    async def previous_run_id(
        self, conversation_id: int, *, turn_id: int, backend: str
    ) -> str | None:
        """The run (or response) of the conversation's latest earlier turn on `backend`."""
        async with self.engine.connect() as connection:
            found = await connection.scalar(
                select(Turn.remote_run_id)
                .where(
                    Turn.conversation_id == conversation_id,
                    Turn.id < turn_id,
                    Turn.backend == backend,
                    Turn.remote_run_id.is_not(None),
                )
                .order_by(Turn.id.desc())
                .limit(1)
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

    async def update_turn(self, turn_id: int, lease: Lease, **values: Any) -> None:
        """Move a turn forward, only while this process still holds the conversation (the
        fencing token is checked in the same statement); otherwise raise `LeaseLost`.
        A turn that ends forgets its messages' action tokens."""
        still_held = exists().where(_held(lease))
        async with self.engine.begin() as connection:
            moved = await connection.execute(
                update(Turn).where(Turn.id == turn_id, still_held).values(**values)
            )
            if not moved.rowcount:
                raise LeaseLost(f"conversation {lease.conversation_id}: taken over")
            if values.get("status") == TurnStatus.DONE:
                await connection.execute(
                    update(InboxMessage)
                    .where(InboxMessage.turn_id == turn_id, InboxMessage.action_token.is_not(None))
                    .values(action_token=None)
                )

    async def turn_shows(self, turn_id: int, ts: str) -> bool:
        """Whether the turn's stored progress names the Slack message `ts` (as its placeholder
        or its reply), whoever holds the conversation now."""
        async with self.engine.connect() as connection:
            found = await connection.scalar(
                select(Turn.id).where(
                    Turn.id == turn_id, or_(Turn.placeholder_ts == ts, Turn.reply_ts == ts)
                )
            )
        return found is not None

    async def set_remote_thread(self, lease: Lease, *, backend: str, remote_id: str) -> None:
        if not await self._write(
            update(Conversation).where(_held(lease)).values(backend=backend, remote_id=remote_id)
        ):
            raise LeaseLost(f"conversation {lease.conversation_id}: taken over")

    async def record_feedback(
        self, *, turn_id: int, user_id: str, value: str, team_id: str | None = None
    ) -> bool:
        """Store a vote; False (nothing stored) when the answer is another workspace's."""
        async with self._sessions.begin() as session:
            if team_id is not None:
                owner = await session.scalar(
                    select(Conversation.team_id)
                    .join(Turn, Turn.conversation_id == Conversation.id)
                    .where(Turn.id == turn_id)
                )
                if owner is not None and owner != team_id:
                    return False
            await session.execute(
                self._insert(Feedback)
                .values(turn_id=turn_id, user_id=user_id, value=value, created_at=time.time())
                .on_conflict_do_update(
                    index_elements=["turn_id", "user_id"],
                    set_={"value": value, "created_at": time.time()},
                )
            )
            return True

    async def feedback_counts(self) -> dict[str, int]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(Feedback.value, func.count()).group_by(Feedback.value)
            )
            return {value: count for value, count in rows.tuples()}

    async def delete_conversations_before(
        self, cutoff: float, *, keep_remote: Collection[str] = ()
    ) -> tuple[int, Sequence[tuple[str, str]]]:
        """Delete idle conversations last active before `cutoff`: how many, and the (backend,
        remote id) of those that had a remote thread.

        Conversations with a remote thread on one of the `keep_remote` backends stay; the
        OpenAI ids of those deleted are recorded in `remote_deletions` until deleted there."""
        async with self._sessions.begin() as session:
            old = and_(
                Conversation.updated_at < cutoff,
                Conversation.needs_attention.is_(False),
                Conversation.lease_owner.is_(None),
                or_(
                    Conversation.remote_id.is_(None),
                    Conversation.backend.is_(None),
                    Conversation.backend.not_in(keep_remote),
                ),
            )
            remote = (
                await session.execute(
                    select(Conversation.backend, Conversation.remote_id).where(
                        old, Conversation.remote_id.is_not(None)
                    )
                )
            ).tuples()
            found = [(str(backend), str(remote_id)) for backend, remote_id in remote]
            at_openai = [(backend, remote_id, None) for backend, remote_id in found]
            await record_remote(session, [row for row in at_openai if row[0] != "chat"])
            ids = select(Conversation.id).where(old).scalar_subquery()
            await session.execute(delete(InboxMessage).where(InboxMessage.conversation_id.in_(ids)))
            await session.execute(
                delete(Feedback).where(
                    Feedback.turn_id.in_(select(Turn.id).where(Turn.conversation_id.in_(ids)))
                )
            )
            await session.execute(delete(Turn).where(Turn.conversation_id.in_(ids)))
            deleted = await session.execute(delete(Conversation).where(old))
            return int(cast(CursorResult[Any], deleted).rowcount or 0), found


def _awaiting_approval(conversation_id: int) -> Any:
    """A turn of the conversation waits for a person's Allow/Deny."""
    return exists().where(
        Turn.conversation_id == conversation_id,
        Turn.status == TurnStatus.AWAITING_APPROVAL,
    )


def _lease_free(now: float) -> Any:
    return or_(Conversation.lease_until.is_(None), Conversation.lease_until < now)


def _held(lease: Lease) -> Any:
    return and_(
        Conversation.id == lease.conversation_id,
        Conversation.lease_owner == lease.owner,
        Conversation.lease_generation == lease.generation,
    )


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
