"""An in-process assistant backend for the turn engine's unit tests: no HTTP, scripted by
plain data. All of this layer's knowledge of `bot.assistants.base.AssistantBackend` is here.

Each attempt at starting a run (polled or streamed) takes the next step of the script; the
last step repeats once the script is used up:

    FakeModel([Say("Hello")])                        answers "Hello"
    FakeModel([Say("Hello", slow=True)])             runs until `release()` is called
    FakeModel([Say("Hello", die_once_started=True)]) the bot dies once the run is started
    FakeModel([Fail(Failure.UNAVAILABLE), Say("x")]) the first attempt fails, the retry answers
    FakeModel([UseTools((ToolUse("lookup", needs_approval=True),), then="got {outputs}")])

Tool calls are asked for as a real backend asks (a `ToolCalls` event) and go through the
bot's one tool loop (`bot.turns.tool_loop`): a call that needs a person's approval pauses the
run with the `ApprovalRequest` it builds; a denied one gives the model the bot's own denial
text; calls past the cap, the cap's text. The model's answer then quotes what it got back
(`then`, with `{outputs}`), so a test reads what the model was told in the answer the user
sees.

What a real API keeps remotely (the runs, by id and turn key) lives in the instance: a
"restarted" bot keeps the same `FakeModel`, as it would keep the same OpenAI.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.assistants.base import (
    AssistantRejected,
    AssistantUnavailable,
    AssistantUnreachable,
    CheckEvent,
    ModelEvent,
    Resume,
    RunCheck,
    RunLookup,
    RunState,
    StreamDelta,
    StreamEvent,
    StreamStarted,
    ToolContext,
    ToolProgress,
    TurnRequest,
    Usage,
)
from bot.assistants.tool_calls import RequestedCall, Toolbox, ToolCalls
from bot.assistants.turn_tools import TurnTools
from bot.attachments import Image
from bot.tools.mcp_client import Catalog, McpTools, ToolOutcome, ToolSpec
from tests.unit.turns.crash import ProcessDied

TOOL_SERVER = "fake"


class Failure(StrEnum):
    UNAVAILABLE = "unavailable"
    UNREACHABLE = "unreachable"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Say:
    """The model answers `text`; streamed as `pieces` (default: word by word). A slow run
    shows its first piece and then waits for `FakeModel.release()`."""

    text: str
    pieces: tuple[str, ...] = ()
    slow: bool = False
    die_once_started: bool = False
    """The bot's process dies as soon as the run exists, before it learns the run's id
    (once per model: the run is then found by the next attempt)."""


@dataclass(frozen=True)
class Fail:
    """Starting the run fails."""

    failure: Failure


@dataclass(frozen=True)
class ToolUse:
    tool: str
    arguments: str = "{}"
    needs_approval: bool = False
    output: str = ""
    """What the tool gives back when it runs."""


@dataclass(frozen=True)
class UseTools:
    """The model calls `calls` in turn, then answers `then` with `{outputs}` (what it got
    back, joined by " | ")."""

    calls: tuple[ToolUse, ...]
    then: str = "{outputs}"


Step = Say | Fail | UseTools


@dataclass
class _Run:
    """A run as the remote API keeps it."""

    id: str
    turn_key: str
    step: Step
    cancelled: bool = False


class _ScriptedTools(McpTools):
    """The tools of a `UseTools` step, each giving its scripted output."""

    def __init__(self, uses: Sequence[ToolUse]) -> None:
        super().__init__((), timeout_s=1.0)
        self._outputs = {use.tool: use.output for use in uses}

    async def call(
        self, spec: ToolSpec, arguments: str, context: ToolContext | None = None
    ) -> ToolOutcome:
        return ToolOutcome(self._outputs[spec.name], ok=True)


class FakeModel:
    """An `AssistantBackend` that plays a script (see the module's docstring)."""

    name = "fake"

    def __init__(self, script: Sequence[Step], *, max_tool_calls: int = 8) -> None:
        assert script, "a script of at least one step"
        self._script = list(script)
        self._max_tool_calls = max_tool_calls
        self._runs: dict[str, _Run] = {}
        self._ids = itertools.count(1)
        self._released = asyncio.Event()
        self._died = False
        self.attempts = 0
        """Attempts at starting a run, failed ones included."""
        self.asked: list[str] = []
        """The prompt of each run started."""
        self.resumed: list[tuple[str, bool]] = []
        """(tool, allowed) for each run carried on after an approval."""
        self.cancelled: list[str] = []
        self.open_runs: set[str] = set()
        self.most_open_at_once = 0

    def release(self) -> None:
        """Slow runs finish."""
        self._released.set()

    @property
    def runs_started(self) -> int:
        return len(self.asked)

    # AssistantBackend ---------------------------------------------------------------------

    async def create_thread(self, *, metadata: dict[str, str]) -> str:
        return f"thread-{next(self._ids)}"

    async def respond(
        self, request: TurnRequest, tools: TurnTools
    ) -> AsyncGenerator[ModelEvent, None]:
        if request.resume is not None:
            yield StreamStarted(self._resume(request.resume, tools))
            return
        run = self._start(request.turn_key, request.text)
        yield StreamStarted(run.id)
        if request.streamed:
            async for event in self._play(run, streamed=True):
                yield event

    async def find_run(self, lookup: RunLookup, tools: TurnTools) -> str | None:
        found = [run.id for run in self._runs.values() if run.turn_key == lookup.turn_key]
        return found[-1] if found else None

    async def check_run(
        self, *, thread_id: str, run_id: str, tools: TurnTools
    ) -> AsyncGenerator[CheckEvent | ToolCalls, None]:
        seen = False
        async for event in self._play(self._runs[run_id], streamed=False):
            seen = seen or isinstance(event, RunCheck)
            if isinstance(event, ToolProgress | RunCheck | ToolCalls):
                yield event
        if not seen:
            yield RunCheck(RunState.IN_PROGRESS)

    async def cancel_run(self, *, thread_id: str, run_id: str) -> Usage | None:
        self._runs[run_id].cancelled = True
        self.cancelled.append(run_id)
        return None

    async def produced_files(self, *, thread_id: str, run_id: str) -> list[Image]:
        return []

    async def delete_thread(self, thread_id: str) -> None:
        return None

    async def close(self) -> None:
        return None

    # The script ---------------------------------------------------------------------------

    def _start(self, turn_key: str, text: str) -> _Run:
        self.attempts += 1
        step = self._script.pop(0) if len(self._script) > 1 else self._script[0]
        if isinstance(step, Fail):
            raise _error(step.failure)
        run = _Run(f"run-{next(self._ids)}", turn_key, step)
        self._runs[run.id] = run
        self.asked.append(text)
        self.open_runs.add(run.id)
        self.most_open_at_once = max(self.most_open_at_once, len(self.open_runs))
        if isinstance(step, Say) and step.die_once_started and not self._died:
            self._died = True
            raise ProcessDied(run.id)
        return run

    def _resume(self, resume: Resume, tools: TurnTools) -> str:
        """The run that asked carries on with the decision."""
        run = self._runs[resume.approval.state]
        tools.decisions[resume.approval.call_id] = resume.allowed
        self.resumed.append((resume.approval.tool, resume.allowed))
        return run.id

    async def _play(self, run: _Run, *, streamed: bool) -> AsyncIterator[StreamEvent | ToolCalls]:
        """What the run shows from where it is: words, tool calls, its end."""
        async for event in self._events(run, streamed=streamed):
            if isinstance(event, RunCheck) and event.state.finished:
                self.open_runs.discard(run.id)
            yield event

    def _events(self, run: _Run, *, streamed: bool) -> AsyncIterator[StreamEvent | ToolCalls]:
        step = run.step
        if run.cancelled or isinstance(step, Fail):
            return _cancelled()
        if isinstance(step, Say):
            return self._say(step, streamed=streamed)
        return self._use_tools(run, step)

    async def _say(self, step: Say, *, streamed: bool) -> AsyncIterator[StreamEvent]:
        if not streamed:
            if step.slow and not self._released.is_set():
                return
            yield RunCheck(RunState.COMPLETED, step.text)
            return
        pieces = step.pieces or tuple(_words(step.text))
        for index, piece in enumerate(pieces):
            yield StreamDelta(piece)
            if index == 0 and step.slow:
                await self._released.wait()
        yield RunCheck(RunState.COMPLETED, step.text)

    async def _use_tools(self, run: _Run, step: UseTools) -> AsyncIterator[StreamEvent | ToolCalls]:
        specs = [
            ToolSpec(TOOL_SERVER, use.tool, use.tool, {}, use.needs_approval) for use in step.calls
        ]
        box = Toolbox(_ScriptedTools(step.calls), Catalog(tuple(specs)), self._max_tool_calls)
        calls = tuple(
            RequestedCall(f"{run.id}-call-{n}", spec.function_name, use.arguments)
            for n, (spec, use) in enumerate(zip(specs, step.calls, strict=True))
        )
        # Asked again after an approval: the turn's tool loop sends what ran before.
        asked = ToolCalls(calls, box, state=run.id)
        yield asked
        outputs = " | ".join(asked.answered().values())
        yield RunCheck(RunState.COMPLETED, step.then.format(outputs=outputs))


async def _cancelled() -> AsyncIterator[StreamEvent]:
    yield RunCheck(RunState.CANCELLED)


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + words[-1:]


def _error(failure: Failure) -> Exception:
    if failure is Failure.UNREACHABLE:
        return AssistantUnreachable("fake: connection refused")
    if failure is Failure.UNAVAILABLE:
        return AssistantUnavailable("fake: HTTP 503")
    return AssistantRejected("fake: HTTP 400 bad request")
