"""The turn repository on SQLite: every transition is fenced by the lease, and a turn that
ends forgets what it no longer needs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.store.db import create_engine, migrate
from bot.store.inbox import NewMessage
from bot.store.leases import Lease, LeaseLost
from bot.store.models import Conversation, InboxMessage, Turn
from bot.store.repository import Store
from bot.store.turns import Turns
from bot.turns.states import Outcome, TurnStatus

Transition = Callable[[Turns, int, Lease], Awaitable[object]]

TRANSITIONS: dict[str, Transition] = {
    "mark_running": lambda t, i, lease: t.mark_running(i, lease, run_id="r", backend="chat"),
    "mark_posting": lambda t, i, lease: t.mark_posting(
        i, lease, outcome=Outcome.COMPLETED, answer="hi"
    ),
    "set_status": lambda t, i, lease: t.set_status(i, lease, TurnStatus.AWAITING_APPROVAL),
    "await_approval": lambda t, i, lease: t.await_approval(i, lease, tool_state="{}"),
    "new_deadline": lambda t, i, lease: t.new_deadline(i, lease, deadline_at=1.0),
    "record_placeholder": lambda t, i, lease: t.record_placeholder(i, lease, "9.0"),
    "record_chunks": lambda t, i, lease: t.record_chunks(i, lease, posted=2, reply_ts="9.0"),
    "mark_done": lambda t, i, lease: t.mark_done(i, lease, chunks_posted=1, reply_ts="9.0"),
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    await migrate(engine)
    yield Store(engine)
    await engine.dispose()


async def started_turn(store: Store) -> tuple[int, Lease]:
    message = NewMessage("T1", "C1", "1.0", "1.0", "U1", "hi", action_token="xoxa-secret")
    conversation = (await store.inbox.record_message(message)).conversation_id
    lease = await store.leases.claim(conversation, owner="a", lease_s=30)
    assert lease is not None
    work = await store.turns.next_turn(lease, deadline_s=60)
    assert work is not None and work.turn.attempts == 1
    return work.turn.id, lease


async def turn_row(store: Store, turn_id: int) -> tuple[object, ...]:
    async with store.engine.connect() as connection:
        row = (await connection.execute(select(Turn).where(Turn.id == turn_id))).one()
    return tuple(row)


@pytest.mark.parametrize("name", list(TRANSITIONS))
async def test_a_transition_under_a_lost_lease_changes_nothing(store: Store, name: str) -> None:
    turn_id, lease = await started_turn(store)
    async with store.engine.begin() as connection:  # paused past its lease
        await connection.execute(update(Conversation).values(lease_until=time.time() - 1))
    taker = await store.leases.claim(lease.conversation_id, owner="b", lease_s=30)
    assert taker is not None
    before = await turn_row(store, turn_id)

    with pytest.raises(LeaseLost):
        await TRANSITIONS[name](store.turns, turn_id, lease)

    assert await turn_row(store, turn_id) == before
    await TRANSITIONS[name](store.turns, turn_id, taker)  # the holder's own write lands
    assert await turn_row(store, turn_id) != before


async def test_a_finished_turn_forgets_its_messages_action_tokens(store: Store) -> None:
    turn_id, lease = await started_turn(store)
    await store.turns.mark_posting(turn_id, lease, outcome=Outcome.COMPLETED, answer="hi")
    async with store.engine.connect() as connection:
        assert await connection.scalar(select(InboxMessage.action_token)) is not None

    await store.turns.mark_done(turn_id, lease, chunks_posted=1, reply_ts="2.0")

    async with store.engine.connect() as connection:
        assert await connection.scalar(select(InboxMessage.action_token)) is None
        status = await connection.scalar(select(Turn.status).where(Turn.id == turn_id))
    assert status == TurnStatus.DONE
    assert await store.turns.next_turn(lease, deadline_s=60) is None


async def test_a_turns_tool_state_is_stored_with_it_while_it_runs_and_dropped_when_done(
    store: Store,
) -> None:
    turn_id, lease = await started_turn(store)
    running = '{"calls_made": 1}'
    await store.turns.mark_running(turn_id, lease, run_id="r", backend="chat", tool_state=running)
    waiting = '{"calls_made": 2}'
    await store.turns.await_approval(turn_id, lease, tool_state=waiting)
    await store.turns.set_status(turn_id, lease, TurnStatus.RESUMING)  # a click: no new state

    work = await store.turns.next_turn(lease, deadline_s=60)  # a restarted process takes it
    assert work is not None and work.turn.tool_state == waiting

    await store.turns.mark_posting(turn_id, lease, outcome=Outcome.COMPLETED, answer="hi")
    await store.turns.mark_done(turn_id, lease, chunks_posted=1, reply_ts="2.0")
    async with store.engine.connect() as connection:
        stored = await connection.scalar(select(Turn.tool_state).where(Turn.id == turn_id))
    assert stored is None


async def test_finding_nothing_to_do_gives_the_lease_up_in_the_same_step(store: Store) -> None:
    turn_id, lease = await started_turn(store)
    await store.turns.mark_done(turn_id, lease, chunks_posted=1, reply_ts="2.0")

    assert await store.turns.next_turn(lease, deadline_s=60) is None

    async with store.engine.connect() as connection:
        row = (await connection.execute(select(Conversation))).one()
    assert (row.lease_owner, row.lease_until, row.needs_attention) == (None, None, False)
    assert await store.leases.claim(lease.conversation_id, owner="b", lease_s=30) is not None
