"""The whole engine as the bot runs it: messages accepted by the conversation service, the
dispatcher leasing their conversations, the runner answering them."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bot.store.inbox import NewMessage
from bot.store.repository import Store
from tests.unit.turns.bench import SETTINGS, THREAD, Bench, until
from tests.unit.turns.fake_model import FakeModel, Say

CHANNELS = ["C1", "C2", "C3", "C4", "C5"]


async def test_every_thread_is_answered_once_with_no_more_runs_at_once_than_the_cap(
    store: Store,
) -> None:
    model = FakeModel([Say("Answered.", slow=True)])
    bench = Bench(store, model, settings=replace(SETTINGS, max_concurrent_turns=2))
    process = bench.start_process()
    running = asyncio.create_task(process.service.run())
    try:
        for n, channel in enumerate(CHANNELS):
            ts = f"{1000 + n}.000300"
            await process.service.accept(NewMessage("T1", channel, THREAD, ts, "UALICE", "hi"))
        await until(lambda: model.runs_started == 2)
        model.release()
        await until(lambda: all(bench.thread(c) == ["Answered."] for c in CHANNELS))
    finally:
        await process.service.shutdown()
        await running
    assert model.runs_started == len(CHANNELS)
    assert model.most_open_at_once == 2
