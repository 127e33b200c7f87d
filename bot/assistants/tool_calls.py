"""The bot's own tool calls, run the same way on every backend.

Each backend translates its API's shapes (a run's `required_action`, a chat reply's
`tool_calls`, a response's `function_call` items) into `RequestedCall`s and hands them to
`run_calls` with the turn's `TurnTools` and its `Toolbox`. What happens to a call is decided
here (`next_step`, pure): it waits for a person, names no tool the turn has, was denied, is
past the turn's cap, or runs. `run_calls` shows each as task updates and gives the text the
model gets back (errors included: the model needs an output for every call it made).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.assistants.base import (
    ApprovalRequest,
    AssistantRejected,
    ToolProgress,
    ToolSource,
    ToolStatus,
    Usage,
)
from bot.assistants.turn_tools import TurnTools
from bot.tools.mcp_client import DENIED_TEXT, Catalog, McpTools, ToolOutcome, ToolSpec

TOOL_LIMIT_TEXT = "error: the limit of tool calls for this answer is reached; answer without it"


def no_such_tool_text(name: str) -> str:
    return f"error: there is no tool named {name}"


class CallStep(StrEnum):
    """What becomes of one call the model asked for."""

    KNOWN = "known"
    """Its output was found before the turn paused for an approval: sent again, not re-run."""
    NEEDS_APPROVAL = "needs_approval"
    """A person must allow it first: the turn pauses; nothing ran, nothing was counted."""
    NO_SUCH_TOOL = "no_such_tool"
    DENIED = "denied"
    OVER_LIMIT = "over_limit"
    RUN = "run"


@dataclass(frozen=True)
class RequestedCall:
    """A function call the model asked for, whichever API asked."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Toolbox:
    """What a turn's calls may use: the tools the bot runs itself, the catalog listed for
    the turn, the cap on calls per turn, and the function names the model was offered
    (None: all of the catalog; a run's own list survives a restart, the catalog may not)."""

    tools: McpTools | None
    catalog: Catalog
    max_calls: int
    offered: Collection[str] | None = None

    def find(self, name: str) -> ToolSpec | None:
        offered = self.offered is None or name in self.offered
        return self.catalog.find(name) if offered else None


@dataclass(frozen=True)
class CallResult:
    """How a call ended; `output` is what the model is sent (none while it waits)."""

    call: RequestedCall
    step: CallStep
    output: str = ""
    spec: ToolSpec | None = None

    def approval(self, state: str) -> ApprovalRequest:
        """The request a person answers for a call that waits (NEEDS_APPROVAL); `state` is
        what the backend needs to carry the turn on afterwards."""
        assert self.spec is not None
        call = self.call
        return ApprovalRequest(call.id, self.spec.server, self.spec.name, call.arguments, state)


@dataclass
class ToolCalls:
    """The model asks for the bot's own tools (an event a backend yields): the turn's tool
    loop (bot/turns/tool_loop.py) runs them with `box` and answers in `outputs` (call id →
    output, one for every call, errors included) before the backend goes on. `state` is what
    the backend needs to ask again after an approval; `usage`, what the request that asked
    used."""

    calls: tuple[RequestedCall, ...]
    box: Toolbox
    state: str = ""
    usage: Usage | None = None
    outputs: dict[str, str] | None = None

    def answered(self) -> dict[str, str]:
        """The outputs, in the order of the calls."""
        if self.outputs is None:
            raise AssistantRejected("tool calls were asked for and never answered")
        return {call.id: self.outputs[call.id] for call in self.calls}


def next_step(
    spec: ToolSpec | None, call_id: str, decisions: Mapping[str, bool], made: int, max_calls: int
) -> CallStep:
    """What becomes of a call (not a known one): `made` counts it among the turn's calls."""
    if spec is not None and spec.needs_approval and call_id not in decisions:
        return CallStep.NEEDS_APPROVAL
    if spec is None:
        return CallStep.NO_SUCH_TOOL
    if spec.needs_approval and not decisions[call_id]:
        return CallStep.DENIED
    if made > max_calls:
        return CallStep.OVER_LIMIT
    return CallStep.RUN


def waiting(call_id: str, spec: ToolSpec) -> ToolProgress:
    return ToolProgress(call_id, f"{spec.title} waits for your approval", ToolStatus.PENDING)


async def run_calls(
    calls: Sequence[RequestedCall], turn: TurnTools, box: Toolbox
) -> AsyncIterator[ToolProgress | CallResult]:
    """Task updates for each call as it goes, then its `CallResult`; in order, up to a call
    that waits for a person (NEEDS_APPROVAL until `turn.decisions` has its yes or no)."""
    for call in calls:
        async for step in _run_call(call, turn, box):
            yield step
            if isinstance(step, CallResult) and step.step is CallStep.NEEDS_APPROVAL:
                return


async def _run_call(
    call: RequestedCall, turn: TurnTools, box: Toolbox
) -> AsyncIterator[ToolProgress | CallResult]:
    known = turn.known_outputs.get(call.id)
    if known is not None:
        yield CallResult(call, CallStep.KNOWN, known)
        return
    spec = box.find(call.name)
    step = next_step(spec, call.id, turn.decisions, turn.calls_made + 1, box.max_calls)
    if step is CallStep.NEEDS_APPROVAL:
        assert spec is not None
        yield waiting(call.id, spec)
        yield CallResult(call, step, spec=spec)
        return
    turn.calls_made += 1
    if step is CallStep.NO_SUCH_TOOL:
        yield CallResult(call, step, no_such_tool_text(call.name))
        return
    assert spec is not None
    if step is CallStep.DENIED:
        yield ToolProgress(call.id, spec.title, ToolStatus.ERROR)
        yield CallResult(call, step, DENIED_TEXT, spec)
        return
    if step is CallStep.OVER_LIMIT:
        yield CallResult(call, step, TOOL_LIMIT_TEXT, spec)
        return
    assert box.tools is not None
    yield ToolProgress(call.id, spec.title, ToolStatus.IN_PROGRESS)
    outcome = await box.tools.call(spec, call.arguments, turn.context)
    yield _finished(call.id, spec, outcome)
    if outcome.unreachable_server is not None:
        turn.unreachable.add(outcome.unreachable_server)
    yield CallResult(call, step, outcome.text, spec)


def _finished(call_id: str, spec: ToolSpec, outcome: ToolOutcome) -> ToolProgress:
    status = ToolStatus.COMPLETE if outcome.ok else ToolStatus.ERROR
    sources = tuple(ToolSource(url, title) for url, title in outcome.sources)
    return ToolProgress(call_id, spec.title, status, sources)
