"""The one small interface the conversation service talks to, whichever API is behind it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeAlias

from bot.attachments import Image

if TYPE_CHECKING:
    from bot.assistants.tool_calls import ToolCalls
    from bot.assistants.turn_tools import TurnTools


class RunState(StrEnum):
    """Where a run (or background response) is. The service maps each to what users see."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    INCOMPLETE = "incomplete"
    REQUIRES_ACTION = "requires_action"
    TOO_LONG = "too_long"
    """The thread no longer fits the model's window, even with less history sent."""
    NEEDS_APPROVAL = "needs_approval"
    """The model asked for a tool call that a person must allow first (`RunCheck.approval`)."""

    @property
    def finished(self) -> bool:
        return self not in (RunState.QUEUED, RunState.IN_PROGRESS)


@dataclass(frozen=True)
class Usage:
    """The tokens one or more model requests used, as the API reported them. Backends report
    each request's usage once (`RunCheck.usage`, `UsageReport`); the runner adds up a turn's."""

    model: str
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class ToolContext:
    """What a turn's own tools act with: Slack's action token for the asking message (lets
    workspace search act for it), the channel asked in, and the workspace (and its
    organisation) whose bot token acts. Held in memory only."""

    action_token: str | None = None
    channel_id: str | None = None
    team_id: str = ""
    enterprise_id: str | None = None


@dataclass(frozen=True)
class TurnOptions:
    """Per-turn choices (a channel's own settings); None keeps the deployment's default.

    `instructions` are added after the deployment-wide instructions, never instead of them.
    """

    model: str | None = None
    instructions: str | None = None
    mcp_servers: tuple[str, ...] | None = None
    """The configured MCP servers (labels) the turn may use; None: all of them."""


NO_OPTIONS = TurnOptions()


@dataclass(frozen=True)
class TurnRequest:
    """What a turn asks of the model: its question, or (`resume`) a person's decision on a
    tool call the turn's run waits for."""

    thread_id: str
    text: str
    turn_key: str
    images: Sequence[Image] = ()
    options: TurnOptions = NO_OPTIONS
    streamed: bool = True
    """False: the run starts in the background and only its id is yielded (polled delivery
    follows it with `check_run`)."""
    resume: Resume | None = None
    """Carry the waiting run on with this decision: only the run to follow is yielded."""

    @classmethod
    def resuming(cls, resume: Resume, *, turn_key: str) -> TurnRequest:
        """The decided tool call goes back to the run; nothing new is asked."""
        return cls(resume.thread_id, "", turn_key, streamed=False, resume=resume)


@dataclass(frozen=True)
class ApprovalRequest:
    """A tool call waiting for a person's yes or no.

    `call_id` names the call at the API (a tool call id, or a Responses
    `mcp_approval_request` item); `state` is what the backend needs to carry on afterwards
    (stored with the request, so the turn survives a restart while it waits).
    """

    call_id: str
    server: str
    tool: str
    arguments: str
    state: str = ""


@dataclass(frozen=True)
class RunLookup:
    """What finds the run an earlier attempt of a turn may have started: the turn's key
    and question, and the run of the conversation's turn before it."""

    thread_id: str
    turn_key: str
    text: str
    previous_run_id: str | None


@dataclass(frozen=True)
class Resume:
    """A person decided a tool call a run waits for: carry the run on with `allowed`."""

    thread_id: str
    run_id: str
    approval: ApprovalRequest
    allowed: bool


@dataclass(frozen=True)
class RunCheck:
    state: RunState
    text: str = ""
    detail: str | None = None
    produced_files: int = 0
    usage: Usage | None = None
    """What the requests finished since the last report used (not a running total)."""
    approval: ApprovalRequest | None = None
    continued_as: str | None = None
    """The run goes on as another (the Responses API: a response with the outputs of the
    function calls the bot ran); wait for that one from now on."""


@dataclass(frozen=True)
class StreamDelta:
    """A piece of answer text as the model produces it."""

    text: str


@dataclass(frozen=True)
class UsageReport:
    """A model request of a streamed run finished and used this much (tool rounds)."""

    usage: Usage


@dataclass(frozen=True)
class StreamStarted:
    """The run exists remotely; its id must be stored before anything else happens."""

    run_id: str


class ToolStatus(StrEnum):
    """A tool call as Slack's task updates show it."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"
    ERROR = "error"


@dataclass(frozen=True)
class ToolSource:
    """Something a tool looked at, shown under its task (a link)."""

    url: str
    title: str


@dataclass(frozen=True)
class ToolProgress:
    """A tool call started, finished or failed; `id` is the same for each update of a call."""

    id: str
    title: str
    status: ToolStatus
    sources: tuple[ToolSource, ...] = ()


def server_down(label: str) -> ToolProgress:
    """A configured tool server that could not be reached, shown as a failed task."""
    return ToolProgress(f"server-{label}", _server_down_text(label), ToolStatus.ERROR)


def server_down_note(label: str) -> str:
    """The line above an answer given without an unreachable tool server."""
    return f"_{_server_down_text(label)}; I answered without it._"


def _server_down_text(label: str) -> str:
    return f"The tool server `{label}` could not be reached"


StreamEvent = StreamStarted | StreamDelta | ToolProgress | UsageReport | RunCheck
ModelEvent: TypeAlias = "StreamEvent | ToolCalls"
"""What a backend yields while a model answers: the run's id (stored before anything else),
text deltas, tool calls (hosted ones as progress; the bot's own as ToolCalls, for the turn's
tool loop), usage, and where the run ends (done, failed, or waiting for an approval)."""
CheckEvent = ToolProgress | RunCheck
"""What following a run yields: its tool calls seen since the last look (the assistant
pane's status line), then where the run is."""


class AssistantUnavailable(Exception):
    """The API could not be reached or kept failing after the client's own retries."""


class AssistantUnreachable(AssistantUnavailable):
    """Nothing answers at the API's address (connection refused): a misconfigured
    OPENAI_BASE_URL or a server that is down. Retrying within a turn only makes the user wait,
    so the service gives up at once (the SDK has already retried with backoff)."""


def is_unreachable(error: BaseException) -> bool:
    """`error` is, or was raised from, an AssistantUnreachable (wrappers keep the cause)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, AssistantUnreachable):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class AssistantRejected(Exception):
    """The API refused the request (bad key, unknown assistant, bad input): retrying won't help."""


def chosen(labels: Sequence[str], choice: Sequence[str] | None) -> list[str]:
    """The labels a turn may use of those configured (`choice` None: all of them)."""
    return list(labels) if choice is None else [label for label in labels if label in choice]


def joined_instructions(base: str | None, extra: str | None) -> str | None:
    """Deployment-wide instructions first, then a channel's own."""
    parts = [part for part in (base, extra) if part]
    return "\n\n".join(parts) or None


class AssistantBackend(Protocol):
    """An assistant API as the service sees it: a thread of messages and runs over it.

    `turn_key` is the bot's own id for a turn; backends store it with the run where the API
    allows, so a process restarted between creating a run and recording its id finds it again.
    A backend keeps nothing of a turn: what a turn's tools need (and anything the turn holds
    open) is its `TurnTools`, owned by the turn and handed to each call.
    """

    name: str

    async def create_thread(self, *, metadata: dict[str, str]) -> str: ...

    def respond(self, request: TurnRequest, tools: TurnTools) -> AsyncGenerator[ModelEvent, None]:
        """Ask the model: the run's id first (StreamStarted), then, streamed, its text
        deltas and tool calls as they come and a final RunCheck. With `request.resume`, a
        run that waited for a person's decision carries on (the call runs, or the model is
        told it was denied): only the run to follow is yielded (the same one, or a new
        one), which `check_run` follows."""
        ...

    async def find_run(self, lookup: RunLookup, tools: TurnTools) -> str | None:
        """The run a failed or crashed attempt of this turn may have started, if the API can
        tell; `previous_run_id` is the run of the conversation's turn before this one."""
        ...

    def check_run(
        self, *, thread_id: str, run_id: str, tools: TurnTools
    ) -> AsyncGenerator[CheckEvent | ToolCalls, None]:
        """The run's tool calls since the last look as they go, then a RunCheck: where the
        run is (the caller bounds this by the turn's deadline). The bot's own tools are
        asked for as ToolCalls, answered by the turn's tool loop before this goes on."""
        ...

    async def cancel_run(self, *, thread_id: str, run_id: str) -> Usage | None:
        """Stop the run; what it used until then, where the API says."""
        ...

    async def produced_files(self, *, thread_id: str, run_id: str) -> list[Image]:
        """Images the assistant made during the run, to upload into the Slack thread."""
        ...

    async def delete_thread(self, thread_id: str) -> None:
        """Forget the thread at OpenAI (or in the bot, for chat); already gone is done; a
        failure raises, so the caller can keep its id for a retry."""
        ...

    async def close(self) -> None: ...


class RunResponder(ABC):
    """`respond` for a backend with a background start, a streamed one, and a way to carry a
    waiting run on (which returns the run to follow): the three backends share it."""

    def respond(self, request: TurnRequest, tools: TurnTools) -> AsyncGenerator[ModelEvent, None]:
        return self._responded(request, tools)

    async def _responded(
        self, request: TurnRequest, tools: TurnTools
    ) -> AsyncGenerator[ModelEvent, None]:
        if request.resume is not None:
            yield StreamStarted(await self._resume_run(request.resume, tools))
            return
        if not request.streamed:
            yield StreamStarted(await self._start_run(request, tools))
            return
        events = self._stream_run(request, tools)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()

    @abstractmethod
    async def _start_run(self, request: TurnRequest, tools: TurnTools) -> str:
        """Start the run in the background; its id."""

    @abstractmethod
    def _stream_run(
        self, request: TurnRequest, tools: TurnTools
    ) -> AsyncGenerator[ModelEvent, None]:
        """The run streamed: its id first (StreamStarted), then its events."""

    @abstractmethod
    async def _resume_run(self, resume: Resume, tools: TurnTools) -> str:
        """Carry on a run that waited for an approval; the run to follow."""
