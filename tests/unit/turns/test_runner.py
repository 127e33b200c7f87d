"""The turn engine driven in-process: what the user sees of one turn, answered by polling
(a placeholder that the answer replaces) or streamed (the words as the model writes them)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bot.live import THINKING_TEXT
from bot.replies import OUTCOME_MESSAGES, SECTION_LIMIT, answer_chunks
from bot.settings_parse import DeliveryMode
from bot.store.repository import Store
from tests.unit.turns.bench import SETTINGS, Bench, until
from tests.unit.turns.crash import ProcessDied
from tests.unit.turns.fake_model import Fail, Failure, FakeModel, Say

STREAMED = replace(SETTINGS, delivery="stream")


def buttons(blocks: list[dict[str, object]]) -> bool:
    return any(block.get("type") == "actions" for block in blocks)


async def test_a_queued_turn_is_answered_once_in_place_of_the_placeholder(store: Store) -> None:
    bench = Bench(store, FakeModel([Say("Paris is the capital.")]))
    conversation = await bench.ask("capital of France?")
    await bench.take_turn(bench.start_process(), conversation)

    assert bench.thread() == ["Paris is the capital."]
    assert bench.slack.calls[:2] == ["post", "update"], "the placeholder is replaced in place"
    assert buttons(bench.messages()[0].blocks), "the answer carries the feedback buttons"
    assert await bench.stored_status(conversation) == "done"


async def test_a_long_answer_is_posted_in_chunks_the_first_replacing_the_placeholder(
    store: Store,
) -> None:
    answer = "\n\n".join(f"Paragraph {n}: " + "word " * 300 for n in range(12))
    bench = Bench(store, FakeModel([Say(answer)]))
    await bench.take_turn(bench.start_process(), await bench.ask("a long one, please"))

    messages = bench.messages()
    assert len(messages) > 1
    assert THINKING_TEXT not in bench.thread()
    assert all(len(message.text) <= SECTION_LIMIT for message in messages)
    assert [buttons(message.blocks) for message in messages] == [False] * (len(messages) - 1) + [
        True
    ], "only the last chunk has the feedback buttons"
    assert "Paragraph 0" in messages[0].text and "Paragraph 11" in messages[-1].text


async def test_a_chunk_posted_just_before_the_process_died_is_not_posted_again(
    store: Store,
) -> None:
    answer = "\n\n".join(f"Paragraph {n}: " + "word " * 300 for n in range(6))
    bench = Bench(store, FakeModel([Say(answer)]))
    conversation = await bench.ask("a long one, please")
    bench.slack.die_after("post", nth=2)  # the placeholder, then the second chunk
    with pytest.raises(ProcessDied):
        await bench.take_turn(bench.start_process(), conversation)

    await bench.take_turn(bench.start_process(), conversation)
    chunks = [reply.text for reply in answer_chunks(answer, turn_id=1)]
    assert len(chunks) > 2
    assert bench.thread() == chunks, "every chunk once, in order"


async def test_a_placeholder_posted_by_a_process_that_died_is_adopted(store: Store) -> None:
    bench = Bench(store, FakeModel([Say("Here it is.")]))
    conversation = await bench.ask("hello?")
    bench.slack.die_after("post")  # the placeholder is shown, its ts never stored
    with pytest.raises(ProcessDied):
        await bench.take_turn(bench.start_process(), conversation)
    assert bench.thread() == [THINKING_TEXT]

    await bench.take_turn(bench.start_process(), conversation)
    assert bench.thread() == ["Here it is."], "one message: the placeholder became the answer"


async def test_a_streamed_answer_shows_its_words_while_the_model_writes(store: Store) -> None:
    model = FakeModel([Say("Streams show words as they come.", slow=True)])
    bench = Bench(store, model, settings=STREAMED)
    conversation = await bench.ask("stream it")
    turn = asyncio.create_task(bench.take_turn(bench.start_process(), conversation))

    await until(lambda: any(m.text.startswith("Streams") for m in bench.messages()))
    assert bench.messages()[0].streaming, "the first words show before the answer is written"
    model.release()
    await turn

    [message] = bench.messages()
    assert message.text == "Streams show words as they come."
    assert not message.streaming, "the stream is finished"
    assert buttons(message.blocks), "the feedback buttons end the stream"
    assert "update" not in bench.slack.calls, "what the user watched stays; nothing re-rendered"


async def test_a_stream_started_by_a_process_that_died_is_adopted(store: Store) -> None:
    model = FakeModel([Say("One stream, adopted.")])
    bench = Bench(store, model, settings=STREAMED)
    conversation = await bench.ask("stream it")
    bench.slack.die_after("start_stream")  # the first words show, the ts is never stored
    with pytest.raises(ProcessDied):
        await bench.take_turn(bench.start_process(), conversation)

    await bench.take_turn(bench.start_process(), conversation)
    [message] = bench.messages()
    assert message.text == "One stream, adopted." and not message.streaming
    assert model.runs_started == 1, "the run the dead process started is the one answered"


@pytest.mark.parametrize("delivery_mode", ["poll", "stream"])
async def test_a_turn_that_died_while_running_resumes_its_stored_run(
    store: Store, delivery_mode: DeliveryMode
) -> None:
    model = FakeModel([Say("Worth the wait.", slow=True)])
    bench = Bench(store, model, settings=replace(SETTINGS, delivery=delivery_mode))
    conversation = await bench.ask("take your time")
    first = asyncio.create_task(bench.take_turn(bench.start_process(), conversation))
    await until(lambda: _status_is(bench, conversation, "running"))
    await until(lambda: bool(bench.messages()))  # the placeholder, or the first words
    first.cancel()  # the process dies
    with pytest.raises(asyncio.CancelledError):
        await first

    model.release()
    await bench.take_turn(bench.start_process(), conversation)
    [message] = bench.messages()
    assert message.text == "Worth the wait." and not message.streaming
    assert model.runs_started == 1, "no second run"


@pytest.mark.parametrize("delivery_mode", ["poll", "stream"])
async def test_a_run_started_just_before_the_process_died_is_found_not_started_again(
    store: Store, delivery_mode: DeliveryMode
) -> None:
    model = FakeModel([Say("Found it.", die_once_started=True)])
    bench = Bench(store, model, settings=replace(SETTINGS, delivery=delivery_mode))
    conversation = await bench.ask("once, please")
    with pytest.raises(ProcessDied):
        await bench.take_turn(bench.start_process(), conversation)
    assert await bench.stored_status(conversation) == "queued", "the run's id was never stored"

    await bench.take_turn(bench.start_process(), conversation)
    assert bench.thread() == ["Found it."]
    assert model.runs_started == 1


async def _status_is(bench: Bench, conversation: int, status: str) -> bool:
    return await bench.stored_status(conversation) == status


# What goes wrong, and what the user is told -----------------------------------------------

FAILURES = [
    # (the assistant's failure, what the user reads, whether it was retried)
    (Failure.UNAVAILABLE, OUTCOME_MESSAGES["unavailable"], True),
    (Failure.UNREACHABLE, OUTCOME_MESSAGES["unavailable"], False),
    (Failure.REJECTED, OUTCOME_MESSAGES["rejected"], False),
]


@pytest.mark.parametrize(
    ("failure", "told", "retried"), FAILURES, ids=[f.value for f, *_ in FAILURES]
)
@pytest.mark.parametrize("delivery_mode", ["poll", "stream"])
async def test_an_assistant_that_fails_is_explained_once(
    store: Store, failure: Failure, told: str, retried: bool, delivery_mode: DeliveryMode
) -> None:
    model = FakeModel([Fail(failure)])
    settings = replace(SETTINGS, delivery=delivery_mode, answer_deadline_s=0.3)
    bench = Bench(store, model, settings=settings)
    await bench.take_turn(bench.start_process(), await bench.ask("anyone there?"))

    assert bench.thread() == [told]
    assert (model.attempts > 1) is retried


async def test_an_assistant_that_recovers_within_the_retries_answers(store: Store) -> None:
    model = FakeModel([Fail(Failure.UNAVAILABLE), Fail(Failure.UNAVAILABLE), Say("Back.")])
    bench = Bench(store, model)
    await bench.take_turn(bench.start_process(), await bench.ask("anyone there?"))
    assert bench.thread() == ["Back."]
    assert model.runs_started == 1


@pytest.mark.parametrize("delivery_mode", ["poll", "stream"])
async def test_past_the_deadline_the_run_is_cancelled_and_the_user_told(
    store: Store, delivery_mode: DeliveryMode
) -> None:
    model = FakeModel([Say("Too late.", pieces=("", "Too late."), slow=True)])
    settings = replace(SETTINGS, delivery=delivery_mode, answer_deadline_s=0.3)
    bench = Bench(store, model, settings=settings)
    await bench.take_turn(bench.start_process(), await bench.ask("slow question"))

    assert bench.thread() == [OUTCOME_MESSAGES["expired"]]
    assert len(model.cancelled) == 1, "the run is stopped at the API"
