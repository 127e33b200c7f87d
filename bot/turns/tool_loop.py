"""The one tool loop, for every backend: the model asks for the bot's own tools (a
`ToolCalls` event), the calls run (MCP servers, workspace search; the turn's cap; errors
and unreachable servers told to the model), the outputs go back to the backend, and the
model carries on. A call a person must allow pauses the turn: the outputs found so far are
kept with the turn's tool state and the approval request ends the events."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from bot.assistants.base import RunCheck, RunState, StreamEvent, ToolProgress, UsageReport
from bot.assistants.tool_calls import CallResult, CallStep, ToolCalls, run_calls
from bot.assistants.turn_tools import TurnTools

BackendEvents = AsyncGenerator[StreamEvent | ToolCalls, None]
"""What a backend yields while it answers (`respond`, `check_run`)."""


async def with_tools(events: BackendEvents, tools: TurnTools) -> AsyncGenerator[StreamEvent, None]:
    """The backend's events, its tool calls run and answered on the way (shown as
    ToolProgress; a pause for approval as a NEEDS_APPROVAL RunCheck, the last event)."""
    try:
        async for event in events:
            if not isinstance(event, ToolCalls):
                yield event
                continue
            if event.usage is not None:
                yield UsageReport(event.usage)
            outputs: dict[str, str] = {}
            async for step in run_calls(event.calls, tools, event.box):
                if isinstance(step, ToolProgress):
                    yield step
                elif step.step is CallStep.NEEDS_APPROVAL:
                    yield _paused(step, event, outputs, tools)
                    return
                else:
                    outputs[step.call.id] = step.output
            tools.known_outputs.clear()  # every call of the round has its output now
            event.outputs = outputs
    finally:
        await events.aclose()


def _paused(
    step: CallResult, event: ToolCalls, outputs: dict[str, str], tools: TurnTools
) -> RunCheck:
    """The turn waits for a person: what ran is kept (the round is asked again after)."""
    tools.known_outputs.update(outputs)
    return RunCheck(RunState.NEEDS_APPROVAL, approval=step.approval(event.state))
