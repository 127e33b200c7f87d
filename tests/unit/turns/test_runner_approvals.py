"""A tool call that needs a person's approval: the turn pauses (stored, the card in the
thread), and the decision carries it on, in a process started after the pause. The tool
calls go through the bot's shared tool handling (`bot.assistants.tool_calls`), the one
every backend uses; the fake model's answer quotes what it was given back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.assistants.tool_calls import TOOL_LIMIT_TEXT
from bot.settings_parse import DeliveryMode
from bot.store.repository import Store
from bot.tools.approvals import ALLOW_ACTION, ApprovalStore, Click
from bot.tools.mcp_client import DENIED_TEXT
from tests.unit.turns.bench import ASKER, SETTINGS, Bench, until
from tests.unit.turns.fake_model import FakeModel, ToolUse, UseTools

CARD = f"<@{ASKER}>, may I run `lookup` (fake) with these arguments?"
LOOKUP = UseTools((ToolUse("lookup", needs_approval=True, output="42"),), then="Got: {outputs}")


def _button_values(blocks: list[dict[str, object]]) -> list[str]:
    return [
        str(element["value"])
        for block in blocks
        for element in block.get("elements", [])  # type: ignore[attr-defined]
        if element.get("action_id") == ALLOW_ACTION
    ]


async def _pause(bench: Bench) -> int:
    """Ask, and let the first process take the turn until it waits for the approval."""
    conversation = await bench.ask("look it up")
    await bench.take_turn(bench.start_process(), conversation)
    return conversation


@pytest.mark.parametrize("delivery_mode", ["poll", "stream"])
async def test_a_call_that_needs_approval_pauses_the_turn_with_a_card(
    store: Store, delivery_mode: DeliveryMode
) -> None:
    model = FakeModel([LOOKUP])
    bench = Bench(store, model, settings=replace(SETTINGS, delivery=delivery_mode))
    conversation = await _pause(bench)

    assert await bench.stored_status(conversation) == "awaiting_approval"
    card = bench.messages()[-1]
    assert card.text == CARD
    turn = await bench.turn(conversation)
    assert turn is not None
    approval = await bench.approval(turn.id)
    assert _button_values(card.blocks) == [str(approval.id)]
    assert approval.message_ts == card.ts
    assert not any(m.streaming for m in bench.messages()), "a live answer stops at the card"
    assert model.resumed == []


DECISIONS = [
    # (the asker's click, what the model is given back, the card afterwards)
    (True, "42", "lookup: allowed"),
    (False, DENIED_TEXT, "lookup: denied"),
]


@pytest.mark.parametrize(("allowed", "given_back", "card"), DECISIONS, ids=["allow", "deny"])
@pytest.mark.parametrize("delivery_mode", ["poll", "stream"])
async def test_the_decision_carries_the_turn_on_after_a_restart(
    store: Store, allowed: bool, given_back: str, card: str, delivery_mode: DeliveryMode
) -> None:
    model = FakeModel([LOOKUP])
    bench = Bench(store, model, settings=replace(SETTINGS, delivery=delivery_mode))
    conversation = await _pause(bench)

    restarted = bench.start_process()
    assert await bench.decide(restarted, conversation, allowed=allowed) is Click.RECORDED
    assert await bench.stored_status(conversation) == "resuming"
    await bench.take_turn(restarted, conversation)

    await until(lambda: bench.thread()[-1] == card)
    assert bench.thread() == [f"Got: {given_back}", card]
    assert model.resumed == [("lookup", allowed)]
    assert model.runs_started == 1, "the paused run is carried on, not asked again"
    assert await bench.stored_status(conversation) == "done"


async def test_an_approval_nobody_gave_in_time_is_denied_and_the_user_told(
    store: Store,
) -> None:
    settings = replace(SETTINGS, approval_timeout_s=0.05)
    model = FakeModel([LOOKUP])
    bench = Bench(store, model, settings=settings)
    conversation = await _pause(bench)

    approvals = ApprovalStore(store.engine, timeout_s=settings.approval_timeout_s)

    async def expired() -> bool:
        return conversation in await approvals.sweep()

    await until(expired)
    await bench.take_turn(bench.start_process(), conversation)

    answer, card = bench.thread()
    assert answer.startswith("_Nobody allowed `lookup` within")
    assert answer.endswith(f"Got: {DENIED_TEXT}"), "the model is told the call was denied"
    assert card == "lookup: expired", "the card's buttons are gone"
    assert model.resumed == [("lookup", False)]


async def test_calls_past_the_cap_are_refused_to_the_model(store: Store) -> None:
    calls = (ToolUse("first", output="one"), ToolUse("second", output="two"))
    model = FakeModel([UseTools(calls, then="Got: {outputs}")], max_tool_calls=1)
    bench = Bench(store, model)
    await bench.take_turn(bench.start_process(), await bench.ask("use both"))
    assert bench.thread() == [f"Got: one | {TOOL_LIMIT_TEXT}"]
