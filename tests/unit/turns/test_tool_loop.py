"""Specification of bot.turns.tool_loop: the one loop that runs the tool calls a backend's
model asks for, answers them, and pauses the turn for a person's approval."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from bot.assistants.base import (
    RunCheck,
    RunState,
    StreamEvent,
    StreamStarted,
    ToolProgress,
    ToolStatus,
    Usage,
    UsageReport,
)
from bot.assistants.tool_calls import RequestedCall, Toolbox, ToolCalls, no_such_tool_text
from bot.assistants.turn_tools import TurnTools
from bot.tools.mcp_client import DENIED_TEXT, Catalog, ToolSpec
from bot.turns.tool_loop import with_tools

REFUND = ToolSpec("orders", "refund_order", "Refund an order", {}, needs_approval=True)
BOX = Toolbox(None, Catalog((REFUND,)), max_calls=3)
USED = Usage("gpt-test", input_tokens=10, output_tokens=2)
NOPE = no_such_tool_text("nope")


def calls(*names: str) -> tuple[RequestedCall, ...]:
    return tuple(RequestedCall(f"c{n}", name, "{}") for n, name in enumerate(names))


class Model:
    """A backend's events: the model asks for `asked` once, then answers with what the
    outputs said; `closed` when the loop let go of it."""

    def __init__(self, asked: tuple[RequestedCall, ...]) -> None:
        self.asked = asked
        self.closed = False

    async def events(self) -> AsyncGenerator[StreamEvent | ToolCalls, None]:
        try:
            yield StreamStarted("run_1")
            request = ToolCalls(self.asked, BOX, state="paused here", usage=USED)
            yield request
            outputs = request.answered()
            yield RunCheck(
                RunState.COMPLETED, text=" | ".join(f"{k}={v}" for k, v in outputs.items())
            )
        finally:
            self.closed = True


async def run(model: Model, tools: TurnTools) -> list[StreamEvent]:
    return [event async for event in with_tools(model.events(), tools)]


async def test_calls_are_answered_in_order_and_the_model_carries_on() -> None:
    tools = TurnTools()
    events = await run(Model(calls("nope", "nope")), tools)
    assert events == [
        StreamStarted("run_1"),
        UsageReport(USED),
        RunCheck(RunState.COMPLETED, text=f"c0={NOPE} | c1={NOPE}"),
    ]
    assert tools.calls_made == 2


async def test_a_call_a_person_must_allow_pauses_the_turn_and_keeps_what_ran() -> None:
    tools = TurnTools()
    model = Model(calls("nope", REFUND.function_name, "nope"))
    events = await run(model, tools)
    *_, waiting, paused = events
    assert waiting == ToolProgress(
        "c1", "refund_order (orders) waits for your approval", ToolStatus.PENDING
    )
    assert isinstance(paused, RunCheck) and paused.state is RunState.NEEDS_APPROVAL
    assert paused.approval is not None
    assert (paused.approval.call_id, paused.approval.state) == ("c1", "paused here")
    assert tools.known_outputs == {"c0": NOPE} and tools.calls_made == 1
    assert model.closed  # the backend asks again when the turn resumes


async def test_a_resumed_round_sends_what_ran_before_and_the_decision() -> None:
    tools = TurnTools(calls_made=1, decisions={"c1": False}, known_outputs={"c0": "earlier"})
    events = await run(Model(calls("nope", REFUND.function_name, "nope")), tools)
    assert ToolProgress("c1", "refund_order (orders)", ToolStatus.ERROR) in events
    assert events[-1] == RunCheck(
        RunState.COMPLETED, text=f"c0=earlier | c1={DENIED_TEXT} | c2={NOPE}"
    )
    assert tools.known_outputs == {}  # the round is answered: nothing is kept for it
