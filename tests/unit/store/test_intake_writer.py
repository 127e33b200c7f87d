"""Intake's group commit: messages arriving together are stored in one transaction, and each
gets what storing it alone would give (new, duplicate, over the rate limit)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Iterator

import pytest
from sqlalchemy import Engine, event, func, select, update

from bot.settings import database_url as async_url
from bot.store.db import create_engine, create_intake_engine, migrate
from bot.store.inbox import NewMessage, RecordStatus
from bot.store.models import Conversation, InboxMessage
from bot.store.repository import Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    url = async_url(database_url)
    engine = create_engine(url)
    await migrate(engine)
    intake = create_intake_engine(url, beside=engine)
    yield Store(engine, intake_engine=intake)
    await intake.dispose()
    await engine.dispose()


def message(ts: str, *, channel: str = "C1", user: str = "U1", thread: str = "") -> NewMessage:
    return NewMessage("T1", channel, thread or ts, ts, user, f"message {ts}")


@contextlib.contextmanager
def commits() -> Iterator[list[int]]:
    """Counts the transactions committed meanwhile, on any engine (one item each): intake's
    writer commits on an engine of its own (on SQLite a synchronous one, on its thread)."""
    seen: list[int] = []

    def committed(_connection: object) -> None:
        seen.append(1)

    event.listen(Engine, "commit", committed)
    try:
        yield seen
    finally:
        event.remove(Engine, "commit", committed)


async def test_messages_arriving_together_share_one_commit(store: Store) -> None:
    assert store.inbox.engine is not store.engine
    batch = [message(f"{i}.0", channel=f"C{i % 3}") for i in range(30)]
    with commits() as committed:
        outcomes = await asyncio.gather(*(store.inbox.record_message(m) for m in batch))
    assert committed, "no commit seen"
    assert [o.status for o in outcomes] == [RecordStatus.NEW] * 30
    assert len(committed) < 30, "each message was committed on its own"
    async with store.engine.connect() as connection:
        stored = await connection.execute(
            select(InboxMessage.ts, InboxMessage.conversation_id, Conversation.channel_id).join(
                Conversation, Conversation.id == InboxMessage.conversation_id
            )
        )
        by_ts = {ts: (conversation, channel) for ts, conversation, channel in stored}
    assert sorted(by_ts) == sorted(m.ts for m in batch)
    for m, outcome in zip(batch, outcomes, strict=True):
        assert by_ts[m.ts] == (outcome.conversation_id, m.channel_id)


async def test_a_message_twice_in_one_batch_or_redelivered_is_stored_once(store: Store) -> None:
    """Slack sends `app_mention` and `message` for one mention, at once; and redelivers."""
    first, second = await asyncio.gather(
        store.inbox.record_message(message("1.0")), store.inbox.record_message(message("1.0"))
    )
    again = await store.inbox.record_message(message("1.0"))
    assert [first.status, second.status, again.status] == [
        RecordStatus.NEW,
        RecordStatus.DUPLICATE,
        RecordStatus.DUPLICATE,
    ]
    assert first.conversation_id == second.conversation_id == again.conversation_id
    async with store.engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(InboxMessage)) == 1


async def test_the_rate_limit_counts_a_batch_in_order(store: Store) -> None:
    """Five at once from one person with a limit of three: the first three are new, the
    rest refused; another person's message in the same batch is not counted with theirs."""
    replies = [message(f"{i}.0", thread="1.0") for i in range(1, 6)]
    outcomes = await asyncio.gather(
        *(store.inbox.record_message(m, per_minute=3) for m in replies),
        store.inbox.record_message(message("9.0", user="U2"), per_minute=3),
    )
    assert [o.status for o in outcomes] == [RecordStatus.NEW] * 3 + [
        RecordStatus.OVER_RATE_LIMIT
    ] * 2 + [RecordStatus.NEW]
    later = await store.inbox.record_message(message("7.0", thread="1.0"), per_minute=3)
    assert later.status is RecordStatus.OVER_RATE_LIMIT
    async with store.engine.connect() as connection:
        refused = await connection.scalars(
            select(InboxMessage.ts).where(InboxMessage.refused.is_(True)).order_by(InboxMessage.ts)
        )
        assert list(refused) == ["4.0", "5.0", "7.0"]


async def test_a_failed_batch_fails_every_ack_in_it_and_the_next_batch_is_stored(
    store: Store,
) -> None:
    """Nothing of a failed batch is acked (Slack redelivers), and the writer carries on."""
    too_long = NewMessage("T1", "C1", "1.0", "1.0", "U1", "x", event_id="E" * 5000)
    results = await asyncio.gather(
        store.inbox.record_message(too_long),
        store.inbox.record_message(message("2.0")),
        return_exceptions=True,
    )
    if store.inbox.engine.dialect.name == "sqlite":
        pytest.skip("SQLite does not enforce column lengths")
    assert all(isinstance(result, Exception) for result in results)
    assert (await store.inbox.record_message(message("2.0"))).status is RecordStatus.NEW


async def test_a_reply_flags_its_thread_again_and_the_thread_learns_its_organisation(
    store: Store,
) -> None:
    """A thread the dispatcher has finished (flag cleared), stored before its organisation
    was known: a reply flags it for the dispatcher again and names the organisation; a
    later message naming none (or another) does not take it away."""
    first = await store.inbox.record_message(message("1.0"))
    async with store.engine.begin() as connection:
        await connection.execute(update(Conversation).values(needs_attention=False))
    replies = [
        dataclasses.replace(message("2.0", thread="1.0"), enterprise_id="E1"),
        message("3.0", thread="1.0", channel="C1"),
    ]
    for reply in replies:
        recorded = await store.inbox.record_message(reply)
        assert recorded.conversation_id == first.conversation_id
    async with store.engine.connect() as connection:
        row = (await connection.execute(select(Conversation))).one()
    assert (row.needs_attention, row.enterprise_id) == (True, "E1")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_acks_database_work_waits_few_turns_of_a_busy_event_loop(store: Store) -> None:
    """While answer work keeps the event loop busy (each turn 20 ms of CPU here), an ack's
    read (is the thread known?) and its batch's commit each wait a few turns (the threads
    they run on share the GIL with the loop), not several for every statement (through
    aiosqlite 16 for the read and 34 for the batch: the ack took a second here)."""
    turns = 0
    busy = True

    async def answer_work() -> None:
        nonlocal turns
        while busy:
            until = time.perf_counter() + 0.02
            while time.perf_counter() < until:  # a CPU-bound callback, holding the loop
                pass
            turns += 1
            await asyncio.sleep(0)

    async def turns_waiting(work: Awaitable[object]) -> int:
        before = turns
        await work
        return turns - before

    reply = message("2.0", thread="1.0")
    await store.inbox.record_message(message("1.0"))  # connections opened, not measured
    await store.inbox.is_known_thread(reply.team_id, reply.channel_id, reply.thread_ts)
    worker = asyncio.create_task(answer_work())
    await asyncio.sleep(0)
    read = await turns_waiting(
        store.inbox.is_known_thread(reply.team_id, reply.channel_id, reply.thread_ts)
    )
    stored = await turns_waiting(store.inbox.record_message(reply))
    busy = False
    await worker
    assert read <= 4 and stored <= 10, f"the read waited {read} turns, the batch {stored}"
