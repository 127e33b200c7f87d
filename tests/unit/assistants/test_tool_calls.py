"""Specification of bot.assistants.tool_calls: what becomes of a tool call the model asks
for, on every backend, and what the turn's tool state keeps."""

from __future__ import annotations

import pytest

from bot.assistants.base import ToolContext, ToolProgress, ToolStatus, server_down_note
from bot.assistants.tool_calls import (
    TOOL_LIMIT_TEXT,
    CallResult,
    CallStep,
    RequestedCall,
    Toolbox,
    next_step,
    no_such_tool_text,
    run_calls,
)
from bot.assistants.turn_tools import TurnTools
from bot.tools.mcp_client import DENIED_TEXT, Catalog, ToolSpec

LOOKUP = ToolSpec("orders", "lookup_order", "Look an order up", {})
REFUND = ToolSpec("orders", "refund_order", "Refund an order", {}, needs_approval=True)
CATALOG = Catalog((LOOKUP, REFUND))

# ---------------------------------------------------------------------------
# next_step
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "decisions", "made", "step"),
    [
        pytest.param(LOOKUP, {}, 1, CallStep.RUN, id="a known tool runs"),
        pytest.param(LOOKUP, {}, 3, CallStep.RUN, id="the cap'th call still runs"),
        pytest.param(LOOKUP, {}, 4, CallStep.OVER_LIMIT, id="past the cap"),
        pytest.param(None, {}, 1, CallStep.NO_SUCH_TOOL, id="no such tool"),
        pytest.param(None, {}, 9, CallStep.NO_SUCH_TOOL, id="no such tool past the cap"),
        pytest.param(REFUND, {}, 1, CallStep.NEEDS_APPROVAL, id="approval asked first"),
        pytest.param(REFUND, {}, 9, CallStep.NEEDS_APPROVAL, id="approval before the cap"),
        pytest.param(REFUND, {"c1": True}, 1, CallStep.RUN, id="allowed runs"),
        pytest.param(REFUND, {"c1": True}, 4, CallStep.OVER_LIMIT, id="allowed, past the cap"),
        pytest.param(REFUND, {"c1": False}, 1, CallStep.DENIED, id="denied"),
        pytest.param(REFUND, {"c1": False}, 9, CallStep.DENIED, id="denied past the cap"),
        pytest.param(REFUND, {"other": True}, 1, CallStep.NEEDS_APPROVAL, id="another's yes"),
    ],
)
def test_what_becomes_of_a_call(
    spec: ToolSpec | None, decisions: dict[str, bool], made: int, step: CallStep
) -> None:
    assert next_step(spec, "c1", decisions, made, max_calls=3) is step


# ---------------------------------------------------------------------------
# run_calls (the paths that run no tool)
# ---------------------------------------------------------------------------


async def outcomes(
    calls: list[RequestedCall], turn: TurnTools, *, max_calls: int = 3
) -> list[ToolProgress | CallResult]:
    steps = run_calls(calls, turn, Toolbox(None, CATALOG, max_calls))
    return [step async for step in steps]


def call(call_id: str, spec: ToolSpec | None) -> RequestedCall:
    return RequestedCall(call_id, spec.function_name if spec else "nope", "{}")


async def test_a_call_waiting_for_approval_stops_the_calls_and_counts_nothing() -> None:
    turn = TurnTools()
    steps = await outcomes([call("c0", None), call("c1", REFUND), call("c2", None)], turn)
    assert [s.step for s in steps if isinstance(s, CallResult)] == [
        CallStep.NO_SUCH_TOOL,
        CallStep.NEEDS_APPROVAL,
    ]
    waiting = steps[1]
    assert waiting == ToolProgress(
        "c1", "refund_order (orders) waits for your approval", ToolStatus.PENDING
    )
    assert isinstance(steps[-1], CallResult)
    request = steps[-1].approval("state")
    assert (request.call_id, request.server, request.tool) == ("c1", "orders", "refund_order")
    assert turn.calls_made == 1


async def test_denied_missing_over_the_cap_and_known_calls_tell_the_model() -> None:
    turn = TurnTools(calls_made=3, decisions={"c1": False}, known_outputs={"c4": "earlier"})
    calls = [call("c1", REFUND), call("c2", None), call("c3", LOOKUP), call("c4", LOOKUP)]
    steps = await outcomes(calls, turn)
    assert steps == [
        ToolProgress("c1", "refund_order (orders)", ToolStatus.ERROR),
        CallResult(calls[0], CallStep.DENIED, DENIED_TEXT, REFUND),
        CallResult(calls[1], CallStep.NO_SUCH_TOOL, no_such_tool_text("nope")),
        CallResult(calls[2], CallStep.OVER_LIMIT, TOOL_LIMIT_TEXT, LOOKUP),
        CallResult(calls[3], CallStep.KNOWN, "earlier"),
    ]
    assert turn.calls_made == 6  # a known output was counted when it ran


async def test_a_tool_not_offered_to_the_run_is_no_tool() -> None:
    box = Toolbox(None, CATALOG, 3, offered={REFUND.function_name})
    steps = run_calls([call("c1", LOOKUP)], TurnTools(), box)
    assert [step async for step in steps] == [
        CallResult(
            call("c1", LOOKUP), CallStep.NO_SUCH_TOOL, no_such_tool_text(LOOKUP.function_name)
        )
    ]


# ---------------------------------------------------------------------------
# TurnTools
# ---------------------------------------------------------------------------


def test_the_answer_names_each_server_it_went_without_once_in_order() -> None:
    turn = TurnTools()
    turn.left_out(["wiki", "crm"])
    turn.left_out(["wiki"])
    notes = [server_down_note("crm"), server_down_note("wiki")]
    assert turn.noted("Hello") == "\n\n".join([*notes, "Hello"])
    assert turn.noted("Hello", first=["cut"]) == "\n\n".join(["cut", *notes, "Hello"])
    assert TurnTools().noted("Hello") == "Hello"


def test_what_survives_a_restart_while_a_turn_waits() -> None:
    turn = TurnTools(
        context=ToolContext("xoxp-action", "C1", team_id="T1"),
        servers=("orders",),
        calls_made=2,
        unreachable={"wiki"},
        decisions={"a": True},
        known_outputs={"c1": "found"},
        unsent_outputs={"resp_1": [{"call_id": "c1", "output": "found"}]},
        unreached=True,
    )
    stored = turn.dump()
    assert "xoxp-action" not in stored  # the action token is never stored
    again = TurnTools.load(stored)
    assert (again.servers, again.calls_made, again.unreachable) == (("orders",), 2, {"wiki"})
    assert again.known_outputs == {"c1": "found"}
    assert again.decisions == {}  # the decision comes with the click that resumes the turn
    assert again.context is None and again.unsent_outputs == {} and not again.unreached


@pytest.mark.parametrize("stored", [None, "", "not json", "[1, 2]"])
def test_a_turn_without_readable_tool_state_starts_fresh(stored: str | None) -> None:
    assert TurnTools.load(stored) == TurnTools()


async def test_closing_a_turns_tools_lets_go_of_what_it_holds() -> None:
    closed: list[str] = []

    class Stream:
        async def close(self) -> None:
            closed.append("stream")

    turn = TurnTools(held=Stream())
    await turn.close()
    await turn.close()  # once only
    assert closed == ["stream"] and turn.held is None


@pytest.mark.parametrize(("made", "offered"), [(0, True), (2, True), (3, False), (5, False)])
def test_tools_are_offered_while_calls_are_left(made: int, offered: bool) -> None:
    assert TurnTools(calls_made=made).may_call(3) is offered
