"""A process that lost its conversation's lease mid-turn shows nothing more; the process
that took the conversation over answers, once."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bot.live import THINKING_TEXT
from bot.settings_parse import DeliveryMode
from bot.store.leases import LeaseLost
from bot.store.repository import Store
from tests.unit.turns.bench import SETTINGS, Bench, until
from tests.unit.turns.fake_model import FakeModel, Say


async def _running(bench: Bench, conversation: int) -> bool:
    return await bench.stored_status(conversation) == "running"


@pytest.mark.parametrize(
    ("delivery_mode", "left_by_the_first"),
    [("poll", [THINKING_TEXT]), ("stream", [])],
)
async def test_a_process_that_lost_the_lease_mid_turn_posts_nothing_more(
    store: Store, delivery_mode: DeliveryMode, left_by_the_first: list[str]
) -> None:
    """Polled, the first process's placeholder stays (the new holder answers in it);
    streamed, the stream it opened after losing the lease is removed."""
    model = FakeModel([Say("Mine, all mine.", pieces=("", "Mine, all mine."), slow=True)])
    bench = Bench(store, model, settings=replace(SETTINGS, delivery=delivery_mode))
    conversation = await bench.ask("who answers?")
    first = asyncio.create_task(bench.take_turn(bench.start_process(), conversation))
    await until(lambda: _running(bench, conversation))

    second = bench.start_process()
    lease = await bench.take_over(second, conversation)  # the first was paused past its lease
    model.release()
    with pytest.raises(LeaseLost):
        await first
    assert bench.thread() == left_by_the_first

    await bench.run_turn(second, lease)
    assert bench.thread() == ["Mine, all mine."]
    assert model.runs_started == 1
