"""A turn's live message and timings are its session's: each turn is counted once in the
metrics and measured from its first message, however its attempts ended (answered, taken over,
stopped, paused for a person), and nothing of it is left behind for a later turn."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlalchemy import update

from bot import metrics
from bot.settings_parse import DeliveryMode
from bot.store.leases import LeaseLost
from bot.store.models import InboxMessage
from bot.store.repository import Store
from bot.tools.approvals import Click
from bot.turns.delivery import INTERRUPTED_NOTE
from tests.unit.turns.bench import SETTINGS, Bench, until
from tests.unit.turns.fake_model import FakeModel, Say, ToolUse, UseTools

STREAMED = replace(SETTINGS, delivery="stream")
WAITED_S = 40.0
"""How long before the turn's pickup its message arrived (in the approval test)."""


@dataclass(frozen=True)
class Counts:
    """The latency histograms' and the answers counter's totals, at one moment."""

    first_words: float
    complete: float
    complete_within_30s: float
    answers: float

    @classmethod
    def now(cls) -> Counts:
        sample = metrics.REGISTRY.get_sample_value
        return cls(
            sample("bot_event_to_first_words_seconds_count") or 0.0,
            sample("bot_event_to_complete_answer_seconds_count") or 0.0,
            sample("bot_event_to_complete_answer_seconds_bucket", {"le": "30.0"}) or 0.0,
            sum(
                sample("bot_answers_total", {"outcome": outcome}) or 0.0
                for outcome in ("completed", "unavailable", "expired", "failed")
            ),
        )

    def since(self, before: Counts) -> tuple[float, float, float]:
        """(first words, complete, answers) observed since `before`."""
        return (
            self.first_words - before.first_words,
            self.complete - before.complete,
            self.answers - before.answers,
        )


def finished_lines(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    return [r.fields for r in records if r.getMessage() == "turn finished"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("delivery_mode", ["poll", "stream"])
async def test_each_turn_is_counted_once_with_its_latencies(
    store: Store, delivery_mode: DeliveryMode, caplog: pytest.LogCaptureFixture
) -> None:
    model = FakeModel([Say("First answer, word by word."), Say("Second answer, also.")])
    bench = Bench(store, model, settings=replace(SETTINGS, delivery=delivery_mode))
    process = bench.start_process()
    before = Counts.now()
    caplog.set_level(logging.INFO, logger="bot.turns.ending")

    await bench.take_turn(process, await bench.ask("one?"))
    assert Counts.now().since(before) == (1, 1, 1), "many words, one first-words observation"
    await bench.take_turn(process, await bench.ask("two?", user="UBOB", channel="C2"))
    assert Counts.now().since(before) == (2, 2, 2), "the next turn is measured on its own"

    lines = finished_lines(caplog.records)
    assert len(lines) == 2
    for line in lines:
        assert 0 <= line["first_words_s"] <= line["complete_s"] < WAITED_S


async def test_a_turn_taken_over_is_counted_by_the_process_that_answers_it(
    store: Store,
) -> None:
    model = FakeModel([Say("Mine, all mine.", pieces=("", "Mine, all mine."), slow=True)])
    bench = Bench(store, model, settings=STREAMED)
    conversation = await bench.ask("who answers?")
    before = Counts.now()
    first = asyncio.create_task(bench.take_turn(bench.start_process(), conversation))
    await until(lambda: _running(bench, conversation))

    second = bench.start_process()
    lease = await bench.take_over(second, conversation)
    model.release()
    with pytest.raises(LeaseLost):
        await first
    _, complete, answers = Counts.now().since(before)
    assert (complete, answers) == (0, 0), "the process that lost the turn did not answer it"

    await bench.run_turn(second, lease)
    assert bench.thread() == ["Mine, all mine."]
    _, complete, answers = Counts.now().since(before)
    assert (complete, answers) == (1, 1)


async def test_a_turn_stopped_mid_stream_ends_its_live_message_and_resumes_in_it(
    store: Store,
) -> None:
    model = FakeModel([Say("Half now, the rest later.", slow=True)])
    bench = Bench(store, model, settings=STREAMED)
    conversation = await bench.ask("stream it")
    stopping = bench.start_process()
    before = Counts.now()
    turn = asyncio.create_task(bench.take_turn(stopping, conversation))
    await until(lambda: _shown_and_stored(bench, conversation))

    stopping.runner.interrupting = True  # the process stops with the turn in hand
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    [message] = bench.messages()
    assert not message.streaming and message.text.endswith(INTERRUPTED_NOTE)
    assert Counts.now().since(before)[1:] == (0, 0), "not answered yet"

    model.release()
    await bench.take_turn(bench.start_process(), conversation)
    assert bench.thread() == ["Half now, the rest later."], "the answer replaced it in place"
    assert Counts.now().since(before)[1:] == (1, 1)


async def test_a_turn_paused_for_approval_is_timed_from_its_message(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Answered by a process started after the pause: its latencies run from the message's
    arrival (stored), the wait for the click included, and it is counted once."""
    lookup = UseTools((ToolUse("lookup", needs_approval=True, output="42"),), then="Got {outputs}")
    bench = Bench(store, FakeModel([lookup]))
    conversation = await bench.ask("look it up")
    async with store.engine.begin() as connection:  # the message came in a while ago
        await connection.execute(
            update(InboxMessage).values(received_at=InboxMessage.received_at - WAITED_S)
        )
    before = Counts.now()
    caplog.set_level(logging.INFO, logger="bot.turns.ending")
    await bench.take_turn(bench.start_process(), conversation)
    assert await bench.stored_status(conversation) == "awaiting_approval"
    assert Counts.now().since(before) == (0, 0, 0), "a paused turn is not answered"

    restarted = bench.start_process()
    assert await bench.decide(restarted, conversation, allowed=True) is Click.RECORDED
    await bench.take_turn(restarted, conversation)

    after = Counts.now()
    assert after.since(before) == (1, 1, 1)
    assert after.complete_within_30s == before.complete_within_30s, "measured from the message"
    [line] = finished_lines(caplog.records)
    assert WAITED_S <= line["first_words_s"] <= line["complete_s"] < WAITED_S + 10


async def _running(bench: Bench, conversation: int) -> bool:
    return await bench.stored_status(conversation) == "running"


async def _shown_and_stored(bench: Bench, conversation: int) -> bool:
    """The first words are in Slack and their message is stored as the turn's."""
    turn = await bench.turn(conversation)
    shown = any(m.text.startswith("Half") for m in bench.messages())
    return shown and turn is not None and turn.placeholder_ts is not None
