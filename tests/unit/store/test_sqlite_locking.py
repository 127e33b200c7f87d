"""Two connections to one SQLite file (intake's and the answer path's): transactions that
may write take the write lock first, so they wait for each other instead of failing with
"database is locked" or writing over what the other just stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_

from bot.store.db import create_engine, create_intake_engine, migrate
from bot.store.inbox import NewMessage
from bot.store.models import Conversation
from bot.store.repository import Store
from bot.store.sqlite_locking import Begin, begin_statement
from bot.store.turns import _WORK_STATE

CONVERSATIONS = Conversation.__table__


@pytest.mark.parametrize(
    ("first_statement", "expected"),
    [
        (None, Begin.WRITE),  # engine.begin(), sessions.begin(): meant to write
        (select(Conversation.id), Begin.READ),
        (select(Conversation.id).with_for_update(), Begin.WRITE),
        (update(Conversation).values(needs_attention=True), Begin.WRITE),
        (delete(Conversation), Begin.WRITE),
        (CONVERSATIONS.insert(), Begin.WRITE),
        (text("SELECT 1"), Begin.READ),
        (text("PRAGMA foreign_keys"), Begin.READ),
        (text("DELETE FROM conversations"), Begin.WRITE),
        ("  select 1", Begin.READ),
        ("UPDATE conversations SET needs_attention = 1", Begin.WRITE),
        ("", Begin.WRITE),
    ],
)
def test_how_a_transaction_begins(first_statement: object, expected: Begin) -> None:
    assert begin_statement(first_statement) is expected


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    engine = create_engine(url)
    await migrate(engine)
    intake = create_intake_engine(url, beside=engine)
    yield engine, intake
    await intake.dispose()
    await engine.dispose()


def message(ts: str) -> NewMessage:
    return NewMessage("T1", "C1", "1.0", ts, "U1", f"message {ts}")


async def test_a_message_stored_while_the_lease_is_released_is_not_stranded(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """The race `next_turn` guards against, across two connections: a message stored
    between its "anything left?" read and its release of the lease. Intake waits for the
    release (or the release would clear the flag the new message set, and nobody would
    answer it)."""
    engine, intake = engines
    store = Store(engine, intake_engine=intake)
    conversation = (await store.inbox.record_message(message("1.0"))).conversation_id
    lease = await store.leases.claim(conversation, owner="a", lease_s=30)
    assert lease is not None
    work = await store.turns.next_turn(lease, deadline_s=60)
    assert work is not None
    await store.turns.mark_done(work.turn.id, lease, chunks_posted=1, reply_ts="9.0")
    stored: list[asyncio.Task[Any]] = []

    def store_a_message_meanwhile(
        _c: Any, _cur: Any, _s: Any, _p: Any, context: Any, _m: Any
    ) -> None:
        if (
            context.compiled is not None
            and context.compiled.statement is _WORK_STATE
            and not stored
        ):
            stored.append(asyncio.ensure_future(store.inbox.record_message(message("2.0"))))
            await_(asyncio.sleep(0.3))  # intake's try: it must wait for the write lock

    event.listen(engine.sync_engine, "after_cursor_execute", store_a_message_meanwhile)
    released = await store.turns.next_turn(lease, deadline_s=60) is None
    event.remove(engine.sync_engine, "after_cursor_execute", store_a_message_meanwhile)
    await stored[0]
    assert released, "nothing was left when the release read"
    (taken,) = await store.leases.claim_waiting(owner="b", lease_s=30, limit=10)
    assert taken.conversation_id == conversation
