"""Turns: the next one to work on, and every step it takes, fenced by the lease.

Each step is one named transition and one prebuilt UPDATE that checks the lease in the
same statement: a process that lost the conversation changes nothing and gets `LeaseLost`.
These run once or more per answer, so they are Core statements on a plain connection, built
once (their compiled form is cached), returning the rows as plain model objects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import BindParameter, Table, bindparam, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.store.database import Database
from bot.store.leases import HELD, RELEASE_IDLE, Lease, awaiting_approval
from bot.store.models import Conversation, InboxMessage, Turn
from bot.turns.states import OPEN_STATUSES, Outcome, TurnStatus

_TURNS = cast(Table, Turn.__table__)
_MESSAGES = cast(Table, InboxMessage.__table__)
_CONVERSATIONS = cast(Table, Conversation.__table__)


@dataclass(frozen=True)
class TurnWork:
    """A turn with the conversation it belongs to and the messages it answers."""

    conversation: Conversation
    turn: Turn
    messages: list[InboxMessage]
    lease: Lease


def _fenced(*columns: str) -> Any:
    """UPDATE the turn's `columns` (bound as `new_<column>`), only under a current lease."""
    return (
        update(_TURNS)
        .where(_TURNS.c.id == bindparam("for_turn"), exists().where(HELD))
        .values({name: bindparam(f"new_{name}", type_=_TURNS.c[name].type) for name in columns})
    )


_MARK_RUNNING = _fenced("status", "remote_run_id", "backend", "tool_state")
_MARK_POSTING = _fenced("status", "outcome", "answer", "files_posted")
_SET_STATUS = _fenced("status")
_AWAIT_APPROVAL = _fenced("status", "tool_state")
_NEW_DEADLINE = _fenced("deadline_at", "attempts")
_PLACEHOLDER = _fenced("placeholder_ts")
_CHUNKS = _fenced("chunks_posted", "reply_ts")
_MARK_DONE = _fenced(
    "status", "chunks_posted", "reply_ts", "files_posted", "finished_at", "tool_state"
)
_FORGET_TOKENS = (
    update(_MESSAGES)
    .where(_MESSAGES.c.turn_id == bindparam("for_turn"), _MESSAGES.c.action_token.is_not(None))
    .values(action_token=None)
)
_SET_REMOTE_THREAD = (
    update(_CONVERSATIONS)
    .where(HELD)
    .values(backend=bindparam("new_backend"), remote_id=bindparam("new_remote_id"))
)

_CONVERSATION: BindParameter[int] = bindparam("for_conversation")
_OPEN_TURN = (
    select(_TURNS.c.id)
    .where(_TURNS.c.conversation_id == _CONVERSATION, _TURNS.c.status.in_(OPEN_STATUSES))
    .order_by(_TURNS.c.id)
    .limit(1)
)
_COUNT_ATTEMPT = (
    update(_TURNS)
    .where(_TURNS.c.id == bindparam("for_turn"))
    .values(attempts=_TURNS.c.attempts + 1)
    .returning(*_TURNS.c)
)
_UNASSIGNED = (
    _MESSAGES.c.conversation_id == _CONVERSATION,
    _MESSAGES.c.turn_id.is_(None),
    _MESSAGES.c.refused.is_(False),
)
_WORK_STATE = select(
    _OPEN_TURN.scalar_subquery().label("open_turn"),
    awaiting_approval(_CONVERSATION).label("awaiting_approval"),
    exists().where(*_UNASSIGNED).label("any_waiting"),
)
"""What the conversation has to do, in one statement: its unfinished turn, whether a turn
waits for a click, whether messages wait for a turn. Sent after the lock (on PostgreSQL,
a statement of its own sees whatever was committed while the lock was awaited)."""
_ADD_TURN = insert(_TURNS).returning(*_TURNS.c)
_ASSIGN_WAITING = update(_MESSAGES).where(*_UNASSIGNED).values(turn_id=bindparam("for_turn"))
_LOCK_CONVERSATION = select(*_CONVERSATIONS.c).where(HELD).with_for_update()
"""The conversation's row, locked, while the lease is still this process's (else no row)."""
_TURN_MESSAGES = (
    select(*_MESSAGES.c)
    .where(_MESSAGES.c.turn_id == bindparam("for_turn"))
    .order_by(_MESSAGES.c.ts)
)


class Turns:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def next_turn(self, lease: Lease, *, deadline_s: float) -> TurnWork | None:
        """The unfinished turn to resume, else a new turn for all waiting messages, else None
        with the lease given up (nothing is left to do until a new message flags the
        conversation again).

        One transaction returns everything a turn needs, and counts the attempt, or finds
        nothing and releases; it holds the conversation's row while it does, and only while
        the lease is still this process's.
        """
        ids = {"for_conversation": lease.conversation_id}
        async with self._db.engine.begin() as connection:
            conversation = (await connection.execute(_LOCK_CONVERSATION, lease.params())).first()
            if conversation is None:
                raise lease.lost()
            state = (await connection.execute(_WORK_STATE, ids)).one()
            if state.open_turn is not None:
                row = (
                    await connection.execute(_COUNT_ATTEMPT, {"for_turn": state.open_turn})
                ).one()
            elif state.awaiting_approval or not state.any_waiting:
                # Nothing to do. A thread waiting for a click keeps its new messages waiting
                # too (the click flags the conversation again).
                await connection.execute(RELEASE_IDLE, ids)
                return None
            else:
                row = await self._open_turn(connection, lease.conversation_id, deadline_s)
            turn = Turn(**row._mapping)
            messages = await connection.execute(_TURN_MESSAGES, {"for_turn": turn.id})
            return TurnWork(
                conversation=Conversation(**conversation._mapping),
                turn=turn,
                messages=[InboxMessage(**message._mapping) for message in messages],
                lease=lease,
            )

    @staticmethod
    async def _open_turn(
        connection: AsyncConnection, conversation_id: int, deadline_s: float
    ) -> Any:
        """A new turn (its first attempt counted) for the messages waiting."""
        ids = {"for_conversation": conversation_id}
        now = time.time()
        row = (
            await connection.execute(
                _ADD_TURN,
                {
                    "conversation_id": conversation_id,
                    "status": TurnStatus.QUEUED,
                    "chunks_posted": 0,
                    "attempts": 1,
                    "files_posted": False,
                    "created_at": now,
                    "deadline_at": now + deadline_s,
                },
            )
        ).one()
        await connection.execute(_ASSIGN_WAITING, {**ids, "for_turn": row.id})
        return row

    # Transitions, each one fenced UPDATE --------------------------------------------------

    async def mark_running(
        self,
        turn_id: int,
        lease: Lease,
        *,
        run_id: str,
        backend: str,
        tool_state: str | None = None,
    ) -> None:
        """The run is known (and the turn's tool state as it stands)."""
        await self._move(
            _MARK_RUNNING,
            turn_id,
            lease,
            new_status=TurnStatus.RUNNING,
            new_remote_run_id=run_id,
            new_backend=backend,
            new_tool_state=tool_state,
        )

    async def mark_posting(
        self,
        turn_id: int,
        lease: Lease,
        *,
        outcome: Outcome,
        answer: str | None = None,
        files_posted: bool = False,
    ) -> None:
        """The turn's outcome is known; what remains is showing it in Slack."""
        await self._move(
            _MARK_POSTING,
            turn_id,
            lease,
            new_status=TurnStatus.POSTING,
            new_outcome=outcome,
            new_answer=answer,
            new_files_posted=files_posted,
        )

    async def set_status(self, turn_id: int, lease: Lease, status: TurnStatus) -> None:
        """A move that changes only the status (waiting for, and coming back from, approval)."""
        await self._move(_SET_STATUS, turn_id, lease, new_status=status)

    async def await_approval(self, turn_id: int, lease: Lease, *, tool_state: str) -> None:
        """The turn waits for a person's click, its tool state stored to carry on with."""
        await self._move(
            _AWAIT_APPROVAL,
            turn_id,
            lease,
            new_status=TurnStatus.AWAITING_APPROVAL,
            new_tool_state=tool_state,
        )

    async def new_deadline(self, turn_id: int, lease: Lease, *, deadline_at: float) -> None:
        """A fresh deadline and attempt count (the user came back to the turn)."""
        await self._move(_NEW_DEADLINE, turn_id, lease, new_deadline_at=deadline_at, new_attempts=1)

    async def record_placeholder(self, turn_id: int, lease: Lease, ts: str) -> None:
        await self._move(_PLACEHOLDER, turn_id, lease, new_placeholder_ts=ts)

    async def record_chunks(
        self, turn_id: int, lease: Lease, *, posted: int, reply_ts: str | None
    ) -> None:
        await self._move(_CHUNKS, turn_id, lease, new_chunks_posted=posted, new_reply_ts=reply_ts)

    async def mark_done(
        self, turn_id: int, lease: Lease, *, chunks_posted: int, reply_ts: str | None
    ) -> float:
        """The turn ends; its messages forget their action tokens, and it its tool state.
        Returns its end time."""
        finished_at = time.time()
        await self._move(
            _MARK_DONE,
            turn_id,
            lease,
            new_status=TurnStatus.DONE,
            new_chunks_posted=chunks_posted,
            new_reply_ts=reply_ts,
            new_files_posted=True,
            new_finished_at=finished_at,
            new_tool_state=None,
            then=_FORGET_TOKENS,
        )
        return finished_at

    async def _move(
        self, statement: Any, turn_id: int, lease: Lease, *, then: Any = None, **values: Any
    ) -> None:
        """Run a transition, and `then` in the same transaction; `LeaseLost` if not held."""
        async with self._db.engine.begin() as connection:
            moved = await connection.execute(
                statement, {"for_turn": turn_id, **lease.params(), **values}
            )
            if not moved.rowcount:
                raise lease.lost()
            if then is not None:
                await connection.execute(then, {"for_turn": turn_id})

    async def set_remote_thread(self, lease: Lease, *, backend: str, remote_id: str) -> None:
        params = {**lease.params(), "new_backend": backend, "new_remote_id": remote_id}
        if not await self._db.write(_SET_REMOTE_THREAD, params):
            raise lease.lost()

    async def turn_shows(self, turn_id: int, ts: str) -> bool:
        """Whether the turn's stored progress names the Slack message `ts` (as its placeholder
        or its reply), whoever holds the conversation now."""
        async with self._db.engine.connect() as connection:
            found = await connection.scalar(
                select(Turn.id).where(
                    Turn.id == turn_id, (Turn.placeholder_ts == ts) | (Turn.reply_ts == ts)
                )
            )
        return found is not None
