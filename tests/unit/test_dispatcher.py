"""The dispatcher on its own: real leases in a SQLite database, a stand-in for the turn
engine. What it promises: every conversation with work is worked on, never more at once
than the cap, none started while the event loop runs late, and a failed turn is retried."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.dispatcher import Dispatcher, LoopLag
from bot.metrics import REGISTRY
from bot.settings import Settings
from bot.store.db import create_engine, migrate
from bot.store.inbox import NewMessage
from bot.store.models import Conversation
from bot.store.repository import Store
from bot.store.turns import TurnWork
from bot.turns.retry import RetryPolicy

SETTINGS = Settings(
    slack_bot_token="xoxb-test",
    slack_signing_secret="secret",
    openai_api_key="sk-test",
    assistant_api="chat",
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    await migrate(engine)
    yield Store(engine)
    await engine.dispose()


class Engine:
    """Stands in for the turn runner: marks each turn done after `work` ran, and keeps
    count of how many turns ran at once."""

    def __init__(self, store: Store, work: Callable[[TurnWork], Awaitable[None]]) -> None:
        self.store = store
        self.work = work
        self.running = 0
        self.most_at_once = 0
        self.answered: list[int] = []

    async def __call__(self, turn: TurnWork) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.work(turn)
            await self.store.turns.mark_done(
                turn.turn.id, turn.lease, chunks_posted=0, reply_ts=None
            )
            self.answered.append(turn.conversation.id)
        finally:
            self.running -= 1


async def ask(store: Store, count: int) -> list[int]:
    conversations = []
    for n in range(count):
        message = NewMessage("T1", f"C{n}", f"{n}.000100", f"{n}.000100", "U1", "hi")
        conversations.append((await store.inbox.record_message(message)).conversation_id)
    return conversations


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def run_dispatcher(
    store: Store, engine: Engine, settings: Settings, conversations: list[int]
) -> Dispatcher:
    dispatcher = Dispatcher(
        store=store, settings=settings, take_turn=engine, retry=RetryPolicy(base_s=0.05)
    )
    task = asyncio.create_task(dispatcher.run())
    for conversation in conversations:
        dispatcher.hint(conversation)
    try:
        await until(lambda: sorted(engine.answered) == sorted(conversations))
        await until(lambda: engine.running == 0)
    finally:
        await dispatcher.shutdown()
        await task
    return dispatcher


async def test_every_conversation_is_answered_once_and_never_more_than_the_cap_at_once(
    store: Store,
) -> None:
    async def slow(_: TurnWork) -> None:
        await asyncio.sleep(0.05)

    engine = Engine(store, slow)
    conversations = await ask(store, 6)
    await run_dispatcher(store, engine, replace(SETTINGS, max_concurrent_turns=2), conversations)
    assert sorted(engine.answered) == sorted(conversations)
    assert engine.most_at_once == 2


async def keep_the_loop_busy() -> None:
    """Code of this process holding the event loop 20 ms at a time, as busy turns do."""
    while True:
        spin_until = time.thread_time() + 0.02
        while time.thread_time() < spin_until:
            pass
        await asyncio.sleep(0)


async def test_the_loop_lag_sees_this_process_hold_the_loop_and_its_recovery() -> None:
    lag = LoopLag()
    lag.measure(busy=True)
    busy = asyncio.create_task(keep_the_loop_busy())
    try:
        await until(lambda: lag.late, timeout=5.0)
    finally:
        busy.cancel()
    await until(lambda: not lag.late, timeout=5.0)
    lag.measure(busy=False)


class AlwaysLate(LoopLag):
    """A loop measured late all along."""

    def measure(self, busy: bool) -> None:
        self.sampled, self.lag_s = True, 1.0


async def test_no_new_conversation_starts_while_the_loop_runs_late(store: Store) -> None:
    """Slack's acks share the event loop: while it runs late, new conversations wait in the
    database instead of adding to the lateness (one always runs, so work goes on)."""

    async def quick(_: TurnWork) -> None:
        await asyncio.sleep(0.05)

    engine = Engine(store, quick)
    conversations = await ask(store, 3)
    dispatcher = Dispatcher(
        store=store, settings=SETTINGS, take_turn=engine, retry=RetryPolicy(), load=AlwaysLate()
    )
    task = asyncio.create_task(dispatcher.run())
    for conversation in conversations:
        dispatcher.hint(conversation)
    try:
        await until(lambda: sorted(engine.answered) == sorted(conversations))
    finally:
        await dispatcher.shutdown()
        await task
    assert engine.most_at_once == 1


async def test_a_turn_that_fails_is_retried_after_a_backoff(store: Store) -> None:
    failures: list[int] = []

    async def flaky(turn: TurnWork) -> None:
        if turn.conversation.id not in failures:
            failures.append(turn.conversation.id)
            raise RuntimeError("the assistant API is down")

    engine = Engine(store, flaky)
    conversations = await ask(store, 2)
    await run_dispatcher(store, engine, SETTINGS, conversations)
    assert sorted(failures) == sorted(conversations)
    assert sorted(engine.answered) == sorted(conversations)


async def test_shutdown_lets_running_turns_finish_and_frees_their_leases(store: Store) -> None:
    release = asyncio.Event()

    async def waits(_: TurnWork) -> None:
        await release.wait()

    engine = Engine(store, waits)
    (conversation,) = await ask(store, 1)
    dispatcher = Dispatcher(store=store, settings=SETTINGS, take_turn=engine, retry=RetryPolicy())
    task = asyncio.create_task(dispatcher.run())
    dispatcher.hint(conversation)
    await until(lambda: engine.running == 1)
    stopping = asyncio.create_task(dispatcher.shutdown())
    await asyncio.sleep(0)
    assert not stopping.done(), "shutdown waits for the turn in hand"
    release.set()
    await stopping
    await task
    assert engine.answered == [conversation]
    other = Dispatcher(
        store=store,
        settings=replace(SETTINGS, instance_id="another"),
        take_turn=engine,
        retry=RetryPolicy(),
    )
    assert await store.leases.claim(conversation, owner=other.owner, lease_s=30) is not None


async def test_a_conversation_another_process_took_over_is_counted_as_a_lost_lease(
    store: Store,
) -> None:
    """Two processes fighting over work show on /metrics (bot_leases_lost_total)."""

    def lost() -> float:
        return REGISTRY.get_sample_value("bot_leases_lost_total") or 0.0

    async def taken_over(turn: TurnWork) -> None:  # paused past the lease; another takes it
        async with store.engine.begin() as connection:
            await connection.execute(update(Conversation).values(lease_until=time.time() - 1))
        assert await store.leases.claim(turn.conversation.id, owner="other", lease_s=30)

    before = lost()
    engine = Engine(store, taken_over)
    dispatcher = Dispatcher(
        store=store, settings=SETTINGS, take_turn=engine, retry=RetryPolicy(base_s=0.05)
    )
    task = asyncio.create_task(dispatcher.run())
    dispatcher.hint((await ask(store, 1))[0])
    try:
        await until(lambda: lost() == before + 1)
    finally:
        await dispatcher.shutdown()
        await task
    assert engine.answered == []


async def test_work_found_waiting_is_all_taken_without_a_scan_for_each(store: Store) -> None:
    """Messages stored before a restart (no hint announces them) are found by a scan; the
    rest of that work is taken as soon as there is room, not one conversation per scan
    (10 s apart when idle at LEASE_S=30)."""

    async def quick(_: TurnWork) -> None:
        await asyncio.sleep(0)

    engine = Engine(store, quick)
    conversations = await ask(store, 6)
    settings = replace(SETTINGS, lease_s=30, max_concurrent_turns=2)
    dispatcher = Dispatcher(
        store=store, settings=settings, take_turn=engine, retry=RetryPolicy(base_s=0.05)
    )
    task = asyncio.create_task(dispatcher.run())
    try:
        await until(lambda: sorted(engine.answered) == sorted(conversations), timeout=5.0)
    finally:
        await dispatcher.shutdown()
        await task
    assert engine.most_at_once <= 2
