"""A fake OpenAI HTTP API for tests: Assistants (threads/runs), Responses + Conversations,
and Chat Completions (also at Azure OpenAI's deployment path).

The server is a small aiohttp app on 127.0.0.1 that the real ``openai.AsyncOpenAI``
client talks to (``base_url=fake.base_url``). Every JSON body has the shape of the
SDK's types in ``openai/types`` (including the fields the SDK declares required), so
the SDK — and its stream helpers — parse everything without surprises.

Webhooks
--------
With ``webhook_url`` and ``webhook_secret`` set, a background response that ends
(completed, failed, cancelled, incomplete) is announced to that URL as OpenAI does: a POST of
``{"id": "evt_…", "object": "event", "created_at", "type": "response.<status>",
"data": {"id": "resp_…"}}`` signed as Standard Webhooks (``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``
keyed with the base64-decoded ``whsec_`` secret), ``webhook_delay_s`` after the moment it
ended, retried on a failure, and — delivery being at least once — every
``webhook_repeat_every``-th event delivered a second time. ``webhook_deliveries`` records
every attempt.

Time model
----------
A run or response follows a timeline fixed when it is created::

    created ──queue_s──▶ in_progress ──run_s──▶ completed (or a scripted outcome)

Its status is computed from that timeline whenever it is read (``_Lifecycle.status_at``),
so no background task drives it, and a response stream replayed later yields exactly the
same events. The side effects of finishing (adding the assistant message / output item,
recording ``completed_at``) are applied by ``_settle()``, which runs before every request
is handled, before every inspection helper and from a loop timer set for the moment of
the transition — so whoever looks first sees a consistent state, and ``completed_at``
always holds the moment of the transition, not the moment it was observed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import secrets
import socket
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, cast, get_args

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = [
    "FakeConversation",
    "FakeMessage",
    "FakeOpenAI",
    "FakeRequest",
    "FakeResponse",
    "FakeRun",
    "FakeThread",
    "Outcome",
    "WebhookDelivery",
    "new_webhook_secret",
    "sign_webhook",
]

Json = dict[str, Any]
"""A JSON object as sent or received over the wire."""

Outcome = Literal[
    "completed", "failed", "expired", "cancelled", "incomplete", "requires_action", "stuck"
]
"""How a run/response ends; everything but "completed" can be scripted with ``script_runs``."""

_OUTCOMES: Final[frozenset[str]] = frozenset(get_args(Outcome))
ACTIVE_STATUSES: Final = frozenset({"queued", "in_progress", "requires_action", "cancelling"})
"""Run statuses during which the real API refuses new messages and runs on the thread."""
TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "expired", "cancelled", "incomplete"})

ERROR_MESSAGE: Final = "Something went wrong"
TOOL_NAME: Final = "get_weather"
"""Name of the function a ``requires_action`` run asks the client to call."""
TOOL_ARGUMENTS: Final = '{"location": "Paris"}'
_DEFAULT_MODEL: Final = "gpt-4o"
_RUN_EXPIRY_S: Final = 600
_SETTLE_SLACK_S: Final = 0.001
"""Timers fire a little late on purpose: asyncio may run a callback up to one clock
resolution early, and a settle that runs before the transition would do nothing."""

_T = TypeVar("_T")
_BODY: Final = web.RequestKey("body", dict)
"""The request's parsed JSON object body ({} when there is none)."""


def echo_reply(user_texts: list[str]) -> str:
    """The default reply: echo the latest user text."""
    return "Echo: " + (user_texts[-1] if user_texts else "")


MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass
class FakeRequest:
    """One HTTP request as it arrived, recorded before it was processed (or refused)."""

    method: str
    path: str
    body: Any
    at: float
    """``time.monotonic()`` when the request arrived."""
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    """HTTP status of the answer, once it has been sent (for a stream: once it has ended)."""


_RECORD: Final = web.RequestKey("record", FakeRequest)
"""The request's record (its status becomes 499 when the client goes away before the end)."""
CLIENT_GONE: Final = 499


@dataclass
class WebhookDelivery:
    """One POST of a webhook event to ``FakeOpenAI.webhook_url``."""

    webhook_id: str
    type: str
    response_id: str
    at: float
    status: int
    """The receiver's HTTP status; 0 when the connection failed."""


WEBHOOK_EVENTS: Final = frozenset({"completed", "failed", "cancelled", "incomplete"})
"""Response statuses that are announced by a ``response.<status>`` webhook event."""


def new_webhook_secret() -> str:
    """A secret in the format OpenAI's dashboard shows: ``whsec_`` + base64 of 32 bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, as OpenAI signs it."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature}",
        "content-type": "application/json",
    }


# --------------------------------------------------------------------------- lifecycle


@dataclass(eq=False)
class _Lifecycle:
    """The timeline of one run (or one phase of it) or one response; see the module doc."""

    start: float
    queue_s: float
    run_s: float
    outcome: Outcome
    cancel_delay_s: float
    """How long ``cancelling`` lasts after a cancel request (0 for responses)."""
    cancel_requested_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on cancellation and on server shutdown, to wake up streams waiting on the timeline."""

    @property
    def in_progress_at(self) -> float:
        return self.start + self.queue_s

    @property
    def ends_at(self) -> float | None:
        """When the outcome is reached; None for "stuck", which runs until cancelled."""
        return None if self.outcome == "stuck" else self.in_progress_at + self.run_s

    @property
    def cancelled_at(self) -> float | None:
        if self.cancel_requested_at is None:
            return None
        return self.cancel_requested_at + self.cancel_delay_s

    def status_at(self, t: float) -> str:
        if self.cancel_requested_at is not None and t >= self.cancel_requested_at:
            cancelled_at = self.cancel_requested_at + self.cancel_delay_s
            return "cancelled" if t >= cancelled_at else "cancelling"
        if t < self.in_progress_at:
            return "queued"
        ends_at = self.ends_at
        if ends_at is None or t < ends_at:
            return "in_progress"
        return self.outcome

    def finished_at(self, t: float) -> float | None:
        """When the status observed at ``t`` became terminal (None if it is not terminal)."""
        status = self.status_at(t)
        if status not in TERMINAL_STATUSES:
            return None
        if self.cancel_requested_at is not None and t >= self.cancel_requested_at:
            return self.cancelled_at
        return self.ends_at

    def next_transition(self) -> float | None:
        """The next moment the status changes on its own, to schedule a settle timer."""
        if self.cancel_requested_at is not None:
            return self.cancelled_at
        return self.ends_at


# --------------------------------------------------------------------------- state


@dataclass(eq=False)
class FakeMessage:
    """A thread message; ``content`` holds content blocks exactly as the API returns them."""

    id: str
    thread_id: str
    role: str
    content: list[Json]
    created_at: int
    run_id: str | None = None
    assistant_id: str | None = None
    status: str = "completed"
    metadata: dict[str, str] = field(default_factory=dict)
    attachments: list[Json] = field(default_factory=list)
    completed_at: int | None = None
    incomplete_at: int | None = None
    incomplete_details: Json | None = None

    @property
    def text(self) -> str:
        return "\n".join(
            str(block["text"]["value"]) for block in self.content if block.get("type") == "text"
        )

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "object": "thread.message",
            "created_at": self.created_at,
            "assistant_id": self.assistant_id,
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "role": self.role,
            "content": self.content,
            "attachments": self.attachments,
            "metadata": self.metadata,
            "status": self.status,
            "completed_at": self.completed_at,
            "incomplete_at": self.incomplete_at,
            "incomplete_details": self.incomplete_details,
        }


@dataclass(eq=False)
class FakeRun:
    id: str
    thread: FakeThread = field(repr=False)
    assistant_id: str
    model: str
    instructions: str
    metadata: dict[str, str]
    tools: list[Json]
    created: float
    """``time.monotonic()`` at creation."""
    lifecycle: _Lifecycle
    reply: str
    """The answer, decided when the run is created (from the thread as it is then)."""
    message_id: str
    """Id of the assistant message the run produces (known up front so streams can name it)."""
    tool_call_id: str
    tool_outputs: list[Json] = field(default_factory=list)
    settled: bool = False
    wanted_calls: list[Json] = field(default_factory=list)
    """Function calls of offered tools (``tool_requests``) the run stops for, if any."""

    @property
    def thread_id(self) -> str:
        return self.thread.id

    def status(self, now: float | None = None) -> str:
        return self.lifecycle.status_at(time.monotonic() if now is None else now)


@dataclass(eq=False)
class FakeThread:
    id: str
    created_at: int
    metadata: dict[str, str]
    messages: list[FakeMessage] = field(default_factory=list)
    runs: list[FakeRun] = field(default_factory=list)

    def active_run(self, now: float) -> FakeRun | None:
        return next((r for r in self.runs if r.status(now) in ACTIVE_STATUSES), None)

    def user_texts(self) -> list[str]:
        return [m.text for m in self.messages if m.role == "user"]

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "object": "thread",
            "created_at": self.created_at,
            "metadata": self.metadata,
            "tool_resources": {},
        }


@dataclass(eq=False)
class FakeResponse:
    id: str
    model: str
    created: float
    lifecycle: _Lifecycle
    reply: str
    background: bool
    store: bool
    conversation_id: str | None
    previous_response_id: str | None
    instructions: str | None
    metadata: dict[str, str]
    tools: list[Json]
    input_items: list[Json]
    user_texts: list[str]
    """All user texts the reply was computed from (conversation or response chain + input)."""
    output_item_id: str
    settled: bool = False
    tool_items: list[Json] = field(default_factory=list)
    """Hosted tool items (mcp_list_tools, mcp_call, mcp_approval_request) before the answer."""
    waits_for_approval: bool = False
    """The output ends with an approval request or function calls: no message."""

    def status(self, now: float | None = None) -> str:
        status = self.lifecycle.status_at(time.monotonic() if now is None else now)
        # A foreground response is worked on as soon as it arrives; only background
        # responses are visibly queued.
        return "in_progress" if status == "queued" and not self.background else status


@dataclass(eq=False)
class FakeChatCompletion:
    """One Chat Completions request as the fake model saw it."""

    id: str
    model: str
    messages: list[Json]
    stream: bool
    reply: str
    lifecycle: _Lifecycle
    tool_calls: list[Json] = field(default_factory=list)
    """The function calls this completion answers with (instead of text)."""
    tools: list[str] = field(default_factory=list)
    """The function names the request offered."""

    @property
    def system(self) -> str:
        return "\n".join(_chat_text(m) for m in self.messages if m.get("role") == "system")

    @property
    def user_texts(self) -> list[str]:
        return [_chat_text(m) for m in self.messages if m.get("role") == "user"]


@dataclass(eq=False)
class FakeConversation:
    id: str
    created_at: int
    metadata: dict[str, str]
    items: list[Json] = field(default_factory=list)
    responses: list[FakeResponse] = field(default_factory=list)

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "object": "conversation",
            "created_at": self.created_at,
            "metadata": self.metadata,
        }


class _ApiError(Exception):
    """Raised by handlers; turned into an OpenAI-style error body by the middleware."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {
            "error": {"message": message, "type": type, "param": param, "code": code}
        }


@dataclass
class _InjectedFailure:
    method: str
    path: re.Pattern[str]
    status: int
    remaining: int
    retry_after: float | None


# --------------------------------------------------------------------------- the server


class FakeOpenAI:
    """A fake OpenAI API server; see the module docstring for the time model.

    Usage::

        fake = FakeOpenAI(queue_s=0.01, run_s=0.05)
        await fake.start()
        client = openai.AsyncOpenAI(api_key=fake.api_key, base_url=fake.base_url)
        ...
        await client.close()
        await fake.stop()
    """

    def __init__(
        self,
        *,
        api_key: str = "sk-test",
        queue_s: float = 0.05,
        run_s: float = 0.2,
        latency_s: float = 0.0,
    ) -> None:
        self.api_key = api_key
        # Read when a run/response is created (or a run resumes after tool outputs).
        self.queue_s = queue_s
        self.run_s = run_s
        self.latency_s = latency_s
        """Delay before every request is processed (so its answer is delayed as much)."""
        self.cancel_s = 0.02
        """How long a cancelled run stays ``cancelling`` before it is ``cancelled``."""
        self.stream_chunks = 4
        """How many text deltas a streamed reply is split into."""
        self.poll_after_ms: int | None = None
        """If set, sent as ``openai-poll-after-ms`` on run retrieval (the SDK's poll helpers
        obey it)."""
        self.reply: Callable[[list[str]], str] = echo_reply
        self.models: set[str] = {"gpt-4o", "gpt-4o-mini", "gpt-5-mini", "gpt-test"}
        """Models ``GET /v1/models/{id}`` knows (others: 404 ``model_not_found``)."""
        self.assistants: set[str] = {"asst_test", "asst_1"}
        """Assistants ``GET /v1/assistants/{id}`` knows (others: 404)."""

        self.requests: list[FakeRequest] = []
        self.threads: dict[str, FakeThread] = {}
        self.conversations: dict[str, FakeConversation] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.image_output: bytes | None = None
        self._holds: list[tuple[str, re.Pattern[str], float]] = []
        """When set, completed runs/responses also produce this PNG (as a file or image item)."""
        self.responses: dict[str, FakeResponse] = {}
        self.completed_at: dict[str, float] = {}
        """Run/response id → ``time.monotonic()`` of the moment it became completed."""
        self.max_concurrent_per_thread = 0
        """Most runs/responses seen active at once on one thread or conversation (for chat
        completions: requests whose conversations begin with the same user message)."""
        self.require_auth = True
        """False: a server that checks no key (Ollama, vLLM without --api-key)."""
        self.chat_completions: list[FakeChatCompletion] = []
        self.assistant_tools: list[Json] = []
        """The tools the assistant itself has (``GET /v1/assistants/{id}``)."""
        self.tool_requests: list[tuple[str, Json]] = []
        """Tool calls the fake model asks for, as (tool name, arguments): on a turn whose
        request offers a tool of that name (exactly, or ending in ``__name``) and holds no
        tool results since the newest user message. Once results are in, the answer is the
        usual reply followed by each result's text, as a model that used them would."""
        self.context_chars: int | None = None
        """If set, chat completions whose messages hold more characters than this are refused
        with 400 ``context_length_exceeded``, as a model's context window refuses them."""

        self.webhook_url: str | None = None
        """Where background responses that end are announced (None: no webhooks)."""
        self.webhook_secret: str | None = None
        self.webhook_delay_s = 0.02
        """From the moment a response ends to the first POST of its event."""
        self.webhook_repeat_every = 2
        """Every n-th event is delivered twice (0: never), as at-least-once delivery does."""
        self.webhook_retries = 2
        """Further attempts after a failed POST (non-2xx or no connection), backing off."""
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._webhook_events = 0
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self._webhook_http: aiohttp.ClientSession | None = None

        self.base_url = ""
        self._scripted: deque[Outcome] = deque()
        self._failures: list[_InjectedFailure] = []
        self._pending_runs: dict[str, FakeRun] = {}
        self._pending_responses: dict[str, FakeResponse] = {}
        self._lifecycles: weakref.WeakSet[_Lifecycle] = weakref.WeakSet()
        self._timers: list[asyncio.TimerHandle] = []
        self._closing = False
        self._runner: web.AppRunner | None = None
        # Maps monotonic time to Unix time for the API's created_at & co.
        self._epoch_offset = time.time() - time.monotonic()

    # ----------------------------------------------------------------- public API

    @property
    def max_concurrent_per_conversation(self) -> int:
        """Alias of ``max_concurrent_per_thread`` (one counter covers both APIs)."""
        return self.max_concurrent_per_thread

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host`` (``127.0.0.1``) on ``port`` (a free one)."""
        # OpenAI takes requests of tens of MB (base64 images); aiohttp's default is 1 MB.
        app = web.Application(
            middlewares=[self._make_middleware()], client_max_size=MAX_REQUEST_BYTES
        )
        self._add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        await web.SockSite(self._runner, sock).start()
        port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        """Stop serving; streams and foreground responses still waiting end at once."""
        self._closing = True
        for lifecycle in list(self._lifecycles):
            lifecycle.changed.set()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in list(self._webhook_tasks):
            task.cancel()
        await asyncio.gather(*self._webhook_tasks, return_exceptions=True)
        if self._webhook_http is not None:
            await self._webhook_http.close()
            self._webhook_http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def requests_to(self, method: str, path_pattern: str) -> list[FakeRequest]:
        """Recorded requests with this method whose path fully matches ``path_pattern``."""
        pattern = re.compile(path_pattern)
        return [
            r
            for r in self.requests
            if r.method.upper() == method.upper() and pattern.fullmatch(r.path)
        ]

    def fail_http(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with an error instead of processing them.

        ``retry_after`` (seconds) is sent as ``retry-after`` and ``retry-after-ms``.
        """
        self._failures.append(
            _InjectedFailure(method.upper(), re.compile(path_pattern), status, times, retry_after)
        )

    def hold_response(self, method: str, path_pattern: str, *, seconds: float) -> None:
        """Process matching requests at once but send their answers `seconds` late: the work
        is done server-side while the client still waits (a crash test's window)."""
        self._holds.append((method, re.compile(path_pattern), seconds))

    def clear_holds(self) -> None:
        self._holds.clear()

    def clear_failures(self) -> None:
        self._failures.clear()

    def script_runs(self, *outcomes: str) -> None:
        """Make the next runs/responses created (in either API) end in these states, in order.

        "failed" (last_error / error with code server_error), "expired" (responses: failed),
        "cancelled", "incomplete" (half the reply, incomplete_details), "requires_action"
        (runs: a ``get_weather`` tool call to answer with submit_tool_outputs; responses:
        failed) and "stuck" (in progress until cancelled). "completed" is accepted too.
        """
        for outcome in outcomes:
            if outcome not in _OUTCOMES:
                raise ValueError(
                    f"unknown outcome {outcome!r}; expected one of {sorted(_OUTCOMES)}"
                )
            self._scripted.append(cast(Outcome, outcome))

    def thread_messages(self, thread_id: str) -> list[tuple[str, str]]:
        """(role, text) of the thread's messages, oldest first."""
        self._settle()
        return [(m.role, m.text) for m in self.threads[thread_id].messages]

    def conversation_items(self, conversation_id: str) -> list[tuple[str, str]]:
        """(role, text) of the conversation's message items, oldest first."""
        self._settle()
        return [
            (str(item["role"]), _item_text(item))
            for item in self.conversations[conversation_id].items
            if item.get("type") == "message"
        ]

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 30.0,
    ) -> None:
        """Wait until ``predicate()`` is true (state is settled before each check)."""
        deadline = time.monotonic() + timeout
        while True:
            self._settle()
            if predicate():
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.005)

    # ----------------------------------------------------------------- time & settling

    def _wall(self, monotonic: float) -> int:
        return int(monotonic + self._epoch_offset)

    def _new_lifecycle(self, outcome: Outcome, *, cancel_delay_s: float) -> _Lifecycle:
        lifecycle = _Lifecycle(
            start=time.monotonic(),
            queue_s=self.queue_s,
            run_s=self.run_s,
            outcome=outcome,
            cancel_delay_s=cancel_delay_s,
        )
        self._lifecycles.add(lifecycle)
        self._schedule_settle(lifecycle)
        return lifecycle

    def _next_outcome(self) -> Outcome:
        return self._scripted.popleft() if self._scripted else "completed"

    def _schedule_settle(self, lifecycle: _Lifecycle) -> None:
        at = lifecycle.next_transition()
        if at is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - time.monotonic()) + _SETTLE_SLACK_S
        self._timers = [t for t in self._timers if t.when() > loop.time()]  # drop fired ones
        self._timers.append(loop.call_later(delay, self._settle))

    def _settle(self) -> None:
        """Apply the side effects of everything that has finished by now, in finishing order."""
        now = time.monotonic()
        finished: list[tuple[float, FakeRun | FakeResponse]] = []
        jobs: list[FakeRun | FakeResponse] = [*self._pending_runs.values()]
        jobs.extend(self._pending_responses.values())
        for job in jobs:
            finished_at = job.lifecycle.finished_at(now)
            if finished_at is not None:
                finished.append((finished_at, job))
        for finished_at, job in sorted(finished, key=lambda pair: pair[0]):
            status = job.lifecycle.status_at(now)
            if isinstance(job, FakeRun):
                del self._pending_runs[job.id]
                if status in ("completed", "incomplete"):
                    job.thread.messages.append(self._assistant_message(job, status))
            else:
                del self._pending_responses[job.id]
                conversation = self.conversations.get(job.conversation_id or "")
                if conversation is not None and status in ("completed", "incomplete"):
                    conversation.items.extend(job.tool_items)
                    if not job.waits_for_approval:
                        conversation.items.append(self._output_item(job, status))
                if job.background and status in WEBHOOK_EVENTS:
                    self._announce(f"response.{status}", job.id, finished_at)
            if status == "completed":
                self.completed_at[job.id] = finished_at
            job.settled = True

    # ----------------------------------------------------------------- webhooks

    def _announce(self, event_type: str, response_id: str, finished_at: float) -> None:
        """Schedule the webhook event(s) for a background response that ended."""
        if self.webhook_url is None or self.webhook_secret is None or self._closing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._webhook_events += 1
        every = self.webhook_repeat_every
        copies = 2 if every and self._webhook_events % every == 0 else 1
        event_id = _new_id("evt", 16)
        body = json.dumps(
            {
                "id": event_id,
                "object": "event",
                "created_at": self._wall(finished_at),
                "type": event_type,
                "data": {"id": response_id},
            },
            separators=(",", ":"),
        ).encode()
        first = max(0.0, finished_at + self.webhook_delay_s - time.monotonic())
        for copy in range(copies):
            delay = first * (copy + 1) + 0.01 * copy
            task = loop.create_task(self._deliver(event_id, event_type, response_id, body, delay))
            self._webhook_tasks.add(task)
            task.add_done_callback(self._webhook_tasks.discard)

    async def _deliver(
        self, event_id: str, event_type: str, response_id: str, body: bytes, delay: float
    ) -> None:
        await asyncio.sleep(delay)
        url, secret = self.webhook_url, self.webhook_secret
        if url is None or secret is None:
            return
        if self._webhook_http is None:
            self._webhook_http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        backoff = 0.05
        for _ in range(1 + self.webhook_retries):
            # Each attempt is signed anew (a fresh timestamp), with the same webhook-id.
            headers = sign_webhook(secret, event_id, int(time.time()), body)
            status = 0
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self._webhook_http.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    status = answer.status
            self.webhook_deliveries.append(
                WebhookDelivery(event_id, event_type, response_id, time.monotonic(), status)
            )
            if 200 <= status < 300:
                return
            await asyncio.sleep(backoff)
            backoff *= 2

    def _note_concurrency(self, active: int) -> None:
        self.max_concurrent_per_thread = max(self.max_concurrent_per_thread, active)

    async def _until(self, lifecycle: _Lifecycle, deadline: float | None) -> bool:
        """Sleep until ``deadline`` (None: forever); False if cancelled before it or stopping.

        A cancel that happened before the deadline interrupts even when the deadline is
        already past, so replaying a cancelled response's stream stops where it stopped.
        """
        while True:
            requested = lifecycle.cancel_requested_at
            if requested is not None and (deadline is None or requested <= deadline):
                return False
            if self._closing:
                return False
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return True
            try:
                timeout = None if deadline is None else deadline - now
                await asyncio.wait_for(lifecycle.changed.wait(), timeout)
            except TimeoutError:
                pass

    async def _sleep_until(self, deadline: float | None) -> None:
        if deadline is not None and not self._closing:
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))

    # ----------------------------------------------------------------- HTTP plumbing

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        t = "/v1/threads/{thread_id}"
        # /v1/threads/runs must come before /v1/threads/{thread_id}.
        router.add_post("/v1/threads/runs", self._create_thread_and_run)
        router.add_post("/v1/threads", self._create_thread)
        router.add_get(t, self._get_thread)
        router.add_post(t, self._update_thread)
        router.add_delete(t, self._delete_thread)
        router.add_post(t + "/messages", self._create_message)
        router.add_get(t + "/messages", self._list_messages)
        router.add_get(t + "/messages/{message_id}", self._get_message)
        router.add_post(t + "/runs", self._create_run)
        router.add_get(t + "/runs", self._list_runs)
        router.add_get(t + "/runs/{run_id}", self._get_run)
        router.add_post(t + "/runs/{run_id}/cancel", self._cancel_run)
        router.add_post(t + "/runs/{run_id}/submit_tool_outputs", self._submit_tool_outputs)

        c = "/v1/conversations/{conversation_id}"
        router.add_post("/v1/conversations", self._create_conversation)
        router.add_get(c, self._get_conversation)
        router.add_post(c, self._update_conversation)
        router.add_delete(c, self._delete_conversation)
        router.add_post(c + "/items", self._create_items)
        router.add_get(c + "/items", self._list_items)
        router.add_get(c + "/items/{item_id}", self._get_item)
        router.add_delete(c + "/items/{item_id}", self._delete_item)

        r = "/v1/responses/{response_id}"
        router.add_post("/v1/responses", self._create_response)
        router.add_get(r, self._get_response)
        router.add_delete(r, self._delete_response)
        router.add_post(r + "/cancel", self._cancel_response)
        router.add_get(r + "/input_items", self._list_input_items)
        router.add_post("/v1/files", self._upload_file)
        router.add_get("/v1/models/{model_id}", self._get_model)
        router.add_get("/v1/assistants/{assistant_id}", self._get_assistant)
        router.add_get("/v1/files/{file_id}/content", self._file_content)
        router.add_post("/v1/chat/completions", self._chat_completion)
        router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat_completion)

    async def _get_model(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/models/{id}`` (``models.retrieve``), as the real API answers it."""
        model = request.match_info["model_id"]
        if model not in self.models:
            raise _ApiError(
                404,
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
            )
        created = self._wall(time.monotonic())
        return web.json_response(
            {"id": model, "object": "model", "created": created, "owned_by": "openai"}
        )

    async def _get_assistant(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/assistants/{id}`` (``beta.assistants.retrieve``); needs the beta header."""
        if "assistants=v2" not in request.headers.get("OpenAI-Beta", ""):
            raise _ApiError(
                400,
                "You must provide the 'OpenAI-Beta' header to access the Assistants API. Please "
                "try again by setting the header 'OpenAI-Beta: assistants=v2'.",
                code="invalid_beta",
            )
        assistant_id = request.match_info["assistant_id"]
        if assistant_id not in self.assistants:
            raise _ApiError(404, f"No assistant found with id '{assistant_id}'.")
        return web.json_response(
            {
                "id": assistant_id,
                "object": "assistant",
                "created_at": self._wall(time.monotonic()),
                "name": None,
                "description": None,
                "model": _DEFAULT_MODEL,
                "instructions": None,
                "tools": self.assistant_tools,
                "tool_resources": {},
                "metadata": {},
                "temperature": 1.0,
                "top_p": 1.0,
                "response_format": "auto",
            }
        )

    async def _upload_file(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/files``: multipart ``purpose`` and ``file``, as ``files.create`` sends."""
        fields = _multipart_fields(request.headers.get("Content-Type", ""), await request.read())
        if "file" not in fields:
            raise _ApiError(400, "Missing file.", param="file")
        filename, content = fields["file"]
        purpose = fields.get("purpose", ("", b""))[1].decode()
        file_id = _new_id("file", 24)
        self.files[file_id] = {"name": filename, "purpose": purpose, "bytes": content}
        return web.json_response(
            {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": int(self._wall(time.monotonic())),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
            }
        )

    def _make_middleware(self) -> Middleware:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._handle(request, handler)

        return middleware

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record, delay, authenticate, maybe fail, then dispatch one request."""
        raw = await request.read()
        record = FakeRequest(
            method=request.method,
            path=request.path,
            body=_decode_body(raw),
            at=time.monotonic(),
            query=dict(request.query),
            headers=dict(request.headers),
        )
        self.requests.append(record)
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        try:
            response = await self._process(request, handler, raw, record)
            for method, pattern, seconds in self._holds:
                if method == request.method and pattern.fullmatch(request.path):
                    await asyncio.sleep(seconds)
        except _ApiError as error:
            response = web.json_response(error.body, status=error.status)
        except web.HTTPException as error:
            if error.status not in (404, 405):
                raise
            message = f"Invalid URL ({request.method} {request.path})"
            response = web.json_response(_ApiError(404, message).body, status=404)
        if not response.prepared:
            response.headers.setdefault("x-request-id", _new_id("req"))
        if record.status is None:
            record.status = response.status
        return response

    async def _process(
        self, request: web.Request, handler: Handler, raw: bytes, record: FakeRequest
    ) -> web.StreamResponse:
        request[_RECORD] = record
        if request.path.startswith("/openai/"):  # Azure OpenAI: an api-key header
            if self.require_auth and request.headers.get("api-key") != self.api_key:
                raise _ApiError(
                    401,
                    "Access denied due to invalid subscription key or wrong API endpoint.",
                    code="401",
                )
            if not request.query.get("api-version"):
                raise _ApiError(404, "Resource not found", code="404")
        elif self.require_auth and request.headers.get("Authorization") != (
            f"Bearer {self.api_key}"
        ):
            raise _ApiError(401, "Incorrect API key provided", code="invalid_api_key")
        for failure in self._failures:
            if (
                failure.remaining > 0
                and failure.method == request.method
                and failure.path.fullmatch(request.path)
            ):
                failure.remaining -= 1
                return _injected_error(failure)
        if request.path.startswith("/v1/threads") and "assistants=v2" not in request.headers.get(
            "OpenAI-Beta", ""
        ):
            raise _ApiError(
                400,
                "You must provide the 'OpenAI-Beta' header to access the Assistants API. Please "
                "try again by setting the header 'OpenAI-Beta: assistants=v2'.",
                code="invalid_beta",
            )
        if (
            raw
            and not isinstance(record.body, dict)
            and request.content_type != "multipart/form-data"
        ):
            raise _ApiError(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly.)",
            )
        request[_BODY] = record.body if isinstance(record.body, dict) else {}
        self._settle()
        return await handler(request)

    async def _sse(
        self, request: web.Request, events: AsyncIterator[tuple[str, Json | str]]
    ) -> web.StreamResponse:
        """Send ``events`` as server-sent events while they are produced."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": _new_id("req"),
            }
        )
        await response.prepare(request)
        try:
            async for name, data in events:
                payload = data if isinstance(data, str) else json.dumps(data)
                await response.write(f"event: {name}\ndata: {payload}\n\n".encode())
            await response.write_eof()
        except ConnectionResetError:
            pass  # The client went away; the run/response carries on regardless.
        return response

    # ----------------------------------------------------------------- Assistants API

    def _thread(self, request: web.Request) -> FakeThread:
        thread_id = request.match_info["thread_id"]
        thread = self.threads.get(thread_id)
        if thread is None:
            raise _ApiError(404, f"No thread found with id '{thread_id}'.")
        return thread

    def _run(self, request: web.Request, thread: FakeThread) -> FakeRun:
        run_id = request.match_info["run_id"]
        run = next((r for r in thread.runs if r.id == run_id), None)
        if run is None:
            raise _ApiError(404, f"No run found with id '{run_id}'.")
        return run

    def _new_thread(self, body: Json) -> FakeThread:
        messages = [_parse_message_param(m) for m in _opt_list(body, "messages")]
        thread = FakeThread(
            id=_new_id("thread"), created_at=self._wall(time.monotonic()), metadata=_metadata(body)
        )
        for role, content, metadata in messages:
            self._append_message(thread, role, content, metadata)
        self.threads[thread.id] = thread
        return thread

    def _append_message(
        self, thread: FakeThread, role: str, content: list[Json], metadata: dict[str, str]
    ) -> FakeMessage:
        message = FakeMessage(
            id=_new_id("msg"),
            thread_id=thread.id,
            role=role,
            content=content,
            created_at=self._wall(time.monotonic()),
            metadata=metadata,
        )
        thread.messages.append(message)
        return message

    def _refuse_if_active(self, thread: FakeThread, *, for_run: bool) -> None:
        active = thread.active_run(time.monotonic())
        if active is None:
            return
        if for_run:
            message = f"Thread {thread.id} already has an active run {active.id}."
        else:
            message = f"Can't add messages to {thread.id} while a run {active.id} is active."
        raise _ApiError(400, message)

    def _start_run(self, thread: FakeThread, body: Json) -> FakeRun:
        assistant_id = _required_str(body, "assistant_id")
        extra = [_parse_message_param(m) for m in _opt_list(body, "additional_messages")]
        self._refuse_if_active(thread, for_run=True)
        for role, content, metadata in extra:
            self._append_message(thread, role, content, metadata)
        instructions = "\n".join(
            s
            for s in (_opt_str(body, "instructions"), _opt_str(body, "additional_instructions"))
            if s
        )
        run = FakeRun(
            id=_new_id("run"),
            thread=thread,
            assistant_id=assistant_id,
            model=_opt_str(body, "model") or _DEFAULT_MODEL,
            instructions=instructions,
            metadata=_metadata(body),
            tools=[t for t in _opt_list(body, "tools") if isinstance(t, dict)],
            created=time.monotonic(),
            lifecycle=self._new_lifecycle(self._next_outcome(), cancel_delay_s=self.cancel_s),
            reply=self.reply(thread.user_texts()),
            message_id=_new_id("msg"),
            tool_call_id=_new_id("call"),
        )
        offered = [
            str(t["function"]["name"])
            for t in run.tools
            if t.get("type") == "function" and isinstance(t.get("function"), dict)
        ]
        run.wanted_calls = self._wanted_calls(offered)
        if run.wanted_calls:
            run.lifecycle = self._new_lifecycle("requires_action", cancel_delay_s=self.cancel_s)
        thread.runs.append(run)
        self._pending_runs[run.id] = run
        self._note_concurrency(sum(r.status() in ACTIVE_STATUSES for r in thread.runs))
        return run

    async def _run_answer(
        self, request: web.Request, run: FakeRun, *, stream: bool
    ) -> web.StreamResponse:
        if stream:
            return await self._sse(request, self._run_events(run, announce=True))
        return web.json_response(self._run_json(run, time.monotonic()))

    async def _create_thread(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._new_thread(request[_BODY]).to_json())

    async def _create_thread_and_run(self, request: web.Request) -> web.StreamResponse:
        body: Json = request[_BODY]
        _required_str(body, "assistant_id")
        thread_param = body.get("thread") or {}
        if not isinstance(thread_param, dict):
            raise _ApiError(400, "Invalid type for 'thread': expected an object.", param="thread")
        run = self._start_run(self._new_thread(thread_param), body)
        return await self._run_answer(request, run, stream=body.get("stream") is True)

    async def _get_thread(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._thread(request).to_json())

    async def _update_thread(self, request: web.Request) -> web.StreamResponse:
        thread = self._thread(request)
        if "metadata" in request[_BODY]:
            thread.metadata = _metadata(request[_BODY])
        return web.json_response(thread.to_json())

    async def _delete_thread(self, request: web.Request) -> web.StreamResponse:
        thread = self._thread(request)
        del self.threads[thread.id]
        return web.json_response({"id": thread.id, "object": "thread.deleted", "deleted": True})

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        thread = self._thread(request)
        role, content, metadata = _parse_message_param(request[_BODY])
        self._refuse_if_active(thread, for_run=False)
        return web.json_response(self._append_message(thread, role, content, metadata).to_json())

    async def _list_messages(self, request: web.Request) -> web.StreamResponse:
        thread = self._thread(request)
        messages = thread.messages
        if run_id := request.query.get("run_id"):
            messages = [m for m in messages if m.run_id == run_id]
        page, has_more = _paginate(messages, lambda m: m.id, request.query)
        return web.json_response(_list_json([m.to_json() for m in page], has_more))

    async def _get_message(self, request: web.Request) -> web.StreamResponse:
        thread = self._thread(request)
        message_id = request.match_info["message_id"]
        message = next((m for m in thread.messages if m.id == message_id), None)
        if message is None:
            raise _ApiError(404, f"No message found with id '{message_id}'.")
        return web.json_response(message.to_json())

    async def _create_run(self, request: web.Request) -> web.StreamResponse:
        run = self._start_run(self._thread(request), request[_BODY])
        return await self._run_answer(request, run, stream=request[_BODY].get("stream") is True)

    async def _list_runs(self, request: web.Request) -> web.StreamResponse:
        thread = self._thread(request)
        now = time.monotonic()
        page, has_more = _paginate(thread.runs, lambda r: r.id, request.query)
        return web.json_response(_list_json([self._run_json(r, now) for r in page], has_more))

    async def _get_run(self, request: web.Request) -> web.StreamResponse:
        run = self._run(request, self._thread(request))
        response = web.json_response(self._run_json(run, time.monotonic()))
        if self.poll_after_ms is not None:
            response.headers["openai-poll-after-ms"] = str(self.poll_after_ms)
        return response

    async def _cancel_run(self, request: web.Request) -> web.StreamResponse:
        run = self._run(request, self._thread(request))
        now = time.monotonic()
        status = run.status(now)
        if status not in ACTIVE_STATUSES or status == "cancelling":
            raise _ApiError(400, f"Cannot cancel run with status '{status}'.")
        run.lifecycle.cancel_requested_at = now
        run.lifecycle.changed.set()
        self._schedule_settle(run.lifecycle)
        return web.json_response(self._run_json(run, now))

    async def _submit_tool_outputs(self, request: web.Request) -> web.StreamResponse:
        run = self._run(request, self._thread(request))
        body: Json = request[_BODY]
        status = run.status()
        if status != "requires_action":
            raise _ApiError(400, f'Runs in status "{status}" do not accept tool outputs.')
        outputs = [o for o in _opt_list(body, "tool_outputs") if isinstance(o, dict)]
        got = sorted(str(o.get("tool_call_id")) for o in outputs)
        expected = sorted(str(c["id"]) for c in run.wanted_calls) or [run.tool_call_id]
        if got != expected:
            raise _ApiError(
                400,
                f"Expected tool outputs for call_ids {expected}, got {got}",
                param="tool_outputs",
            )
        run.tool_outputs.extend(outputs)
        if run.wanted_calls:
            results = [str(o.get("output", "")) for o in outputs]
            run.reply = self.reply(run.thread.user_texts()) + "\n\n" + "\n".join(results)
            run.wanted_calls = []
        # The run starts a new queued → in_progress → completed phase.
        run.lifecycle = self._new_lifecycle("completed", cancel_delay_s=self.cancel_s)
        self._pending_runs[run.id] = run
        if body.get("stream") is True:
            return await self._sse(request, self._run_events(run, announce=False))
        return web.json_response(self._run_json(run, time.monotonic()))

    def _run_json(self, run: FakeRun, t: float) -> Json:
        """The run as the API shows it at monotonic time ``t``."""
        lifecycle = run.lifecycle
        status = lifecycle.status_at(t)
        finished_at = lifecycle.finished_at(t)
        finished = None if finished_at is None else self._wall(finished_at)
        started = lifecycle.in_progress_at if t >= lifecycle.in_progress_at else None
        tokens = _usage_tokens(run.thread.user_texts(), run.reply)
        return {
            "id": run.id,
            "object": "thread.run",
            "created_at": self._wall(run.created),
            "assistant_id": run.assistant_id,
            "thread_id": run.thread.id,
            "status": status,
            "started_at": None if started is None else self._wall(started),
            "expires_at": None if finished else self._wall(run.created + _RUN_EXPIRY_S),
            "cancelled_at": finished if status == "cancelled" else None,
            "failed_at": finished if status == "failed" else None,
            "completed_at": finished if status == "completed" else None,
            "required_action": (
                {
                    "type": "submit_tool_outputs",
                    "submit_tool_outputs": {
                        "tool_calls": run.wanted_calls
                        or [
                            {
                                "id": run.tool_call_id,
                                "type": "function",
                                "function": {"name": TOOL_NAME, "arguments": TOOL_ARGUMENTS},
                            }
                        ]
                    },
                }
                if status == "requires_action"
                else None
            ),
            "last_error": (
                {"code": "server_error", "message": ERROR_MESSAGE} if status == "failed" else None
            ),
            "incomplete_details": (
                {"reason": "max_completion_tokens"} if status == "incomplete" else None
            ),
            "model": run.model,
            "instructions": run.instructions,
            "tools": run.tools,
            "metadata": run.metadata,
            "usage": (
                {
                    "prompt_tokens": tokens[0],
                    "completion_tokens": tokens[1],
                    "total_tokens": sum(tokens),
                }
                if status in ("completed", "incomplete")
                else None
            ),
            "temperature": 1.0,
            "top_p": 1.0,
            "max_prompt_tokens": None,
            "max_completion_tokens": None,
            "truncation_strategy": {"type": "auto", "last_messages": None},
            "response_format": "auto",
            "tool_choice": "auto",
            "parallel_tool_calls": True,
        }

    def _assistant_message(self, run: FakeRun, status: str) -> FakeMessage:
        """The run's answer: as stored once the run has finished, or (status "in_progress")
        as first announced by a stream, still empty."""
        lifecycle = run.lifecycle
        end = lifecycle.ends_at or time.monotonic()
        text = run.reply if status == "completed" else _partial(run.reply)
        return FakeMessage(
            id=run.message_id,
            thread_id=run.thread.id,
            role="assistant",
            content=[] if status == "in_progress" else [_text_block(text), *self._image_blocks()],
            created_at=self._wall(lifecycle.in_progress_at),
            run_id=run.id,
            assistant_id=run.assistant_id,
            status=status,
            completed_at=self._wall(end) if status == "completed" else None,
            incomplete_at=self._wall(end) if status == "incomplete" else None,
            incomplete_details={"reason": "max_tokens"} if status == "incomplete" else None,
        )

    async def _run_events(
        self, run: FakeRun, *, announce: bool
    ) -> AsyncIterator[tuple[str, Json | str]]:
        """The SSE events of a run's current phase, each sent at its moment on the timeline."""
        lifecycle = run.lifecycle
        if announce:
            yield "thread.run.created", self._run_json(run, lifecycle.start)
        yield "thread.run.queued", self._run_json(run, lifecycle.start)
        if not await self._until(lifecycle, lifecycle.in_progress_at):
            async for event in self._run_interrupted(run):
                yield event
            return
        yield "thread.run.in_progress", self._run_json(run, lifecycle.in_progress_at)

        outcome = lifecycle.outcome
        text = {"completed": run.reply, "incomplete": _partial(run.reply)}.get(outcome)
        if text is not None:
            draft = self._assistant_message(run, "in_progress").to_json()
            yield "thread.message.created", draft
            yield "thread.message.in_progress", draft
            chunks = _chunks(text, self.stream_chunks)
            for i, chunk in enumerate(chunks):
                at = lifecycle.in_progress_at + lifecycle.run_s * i / len(chunks)
                if not await self._until(lifecycle, at):
                    async for event in self._run_interrupted(run):
                        yield event
                    return
                delta = {"content": [{"index": 0, **_text_block(chunk)}]}
                yield (
                    "thread.message.delta",
                    {
                        "id": run.message_id,
                        "object": "thread.message.delta",
                        "delta": delta,
                    },
                )

        if not await self._until(lifecycle, lifecycle.ends_at):
            async for event in self._run_interrupted(run):
                yield event
            return
        self._settle()
        ends_at = cast(float, lifecycle.ends_at)
        if text is not None:
            message = next(m for m in run.thread.messages if m.id == run.message_id)
            yield f"thread.message.{message.status}", message.to_json()
        yield f"thread.run.{outcome}", self._run_json(run, ends_at)
        yield "done", "[DONE]"

    async def _run_interrupted(self, run: FakeRun) -> AsyncIterator[tuple[str, Json | str]]:
        """The end of a run stream after a cancel request (nothing if the server is stopping)."""
        lifecycle = run.lifecycle
        requested = lifecycle.cancel_requested_at
        if requested is None:
            return
        yield "thread.run.cancelling", self._run_json(run, requested)
        await self._sleep_until(lifecycle.cancelled_at)
        self._settle()
        yield "thread.run.cancelled", self._run_json(run, cast(float, lifecycle.cancelled_at))
        yield "done", "[DONE]"

    # ----------------------------------------------------------------- Conversations API

    def _conversation(self, conversation_id: str, *, param: str | None = None) -> FakeConversation:
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            raise _ApiError(
                404, f"Conversation with id '{conversation_id}' not found.", param=param
            )
        return conversation

    def _conversation_of(self, request: web.Request) -> FakeConversation:
        return self._conversation(request.match_info["conversation_id"])

    async def _create_conversation(self, request: web.Request) -> web.StreamResponse:
        body: Json = request[_BODY]
        items = [_parse_input_item(i) for i in _opt_list(body, "items")]
        conversation = FakeConversation(
            id=_new_id("conv", 24),
            created_at=self._wall(time.monotonic()),
            metadata=_metadata(body),
            items=items,
        )
        self.conversations[conversation.id] = conversation
        return web.json_response(conversation.to_json())

    async def _get_conversation(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._conversation_of(request).to_json())

    async def _update_conversation(self, request: web.Request) -> web.StreamResponse:
        conversation = self._conversation_of(request)
        conversation.metadata = _metadata(request[_BODY])
        return web.json_response(conversation.to_json())

    async def _delete_conversation(self, request: web.Request) -> web.StreamResponse:
        conversation = self._conversation_of(request)
        del self.conversations[conversation.id]
        return web.json_response(
            {"id": conversation.id, "object": "conversation.deleted", "deleted": True}
        )

    async def _create_items(self, request: web.Request) -> web.StreamResponse:
        conversation = self._conversation_of(request)
        raw_items = request[_BODY].get("items")
        if not isinstance(raw_items, list):
            raise _ApiError(400, "Missing required parameter: 'items'.", param="items")
        items = [_parse_input_item(i) for i in raw_items]
        conversation.items.extend(items)
        return web.json_response(_list_json(items, has_more=False))

    async def _list_items(self, request: web.Request) -> web.StreamResponse:
        conversation = self._conversation_of(request)
        page, has_more = _paginate(conversation.items, lambda i: str(i["id"]), request.query)
        return web.json_response(_list_json(page, has_more))

    def _find_item(self, request: web.Request) -> tuple[FakeConversation, Json]:
        conversation = self._conversation_of(request)
        item_id = request.match_info["item_id"]
        item = next((i for i in conversation.items if i["id"] == item_id), None)
        if item is None:
            raise _ApiError(404, f"Item with id '{item_id}' not found.")
        return conversation, item

    async def _get_item(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._find_item(request)[1])

    async def _delete_item(self, request: web.Request) -> web.StreamResponse:
        conversation, item = self._find_item(request)
        conversation.items.remove(item)
        return web.json_response(conversation.to_json())

    # ----------------------------------------------------------------- Responses API

    def _response(self, request: web.Request) -> FakeResponse:
        response_id = request.match_info["response_id"]
        response = self.responses.get(response_id)
        if response is None or not response.store:
            raise _ApiError(404, f"Response with id '{response_id}' not found.")
        return response

    async def _create_response(self, request: web.Request) -> web.StreamResponse:
        body: Json = request[_BODY]
        model = _required_str(body, "model")
        background = body.get("background") is True
        store = body.get("store") is not False
        if background and not store:
            raise _ApiError(400, "Background mode requires 'store' to be true.", param="store")
        conversation = self._conversation_param(body.get("conversation"))
        previous_id = _opt_str(body, "previous_response_id")
        if conversation is not None and previous_id is not None:
            raise _ApiError(
                400,
                "Mutually exclusive parameters: Ensure you are only providing one of: "
                "'previous_response_id' or 'conversation'.",
                param="conversation",
            )
        previous = None
        if previous_id is not None:
            previous = self.responses.get(previous_id)
            if previous is None:
                raise _ApiError(
                    404,
                    f"Previous response with id '{previous_id}' not found.",
                    param="previous_response_id",
                )
        input_items = _parse_input(body.get("input"))
        input_texts = [_item_text(i) for i in input_items if _is_user_message(i)]

        # A refused request adds nothing to the conversation: its input joins only once
        # every check has passed.
        history = [*conversation.items, *input_items] if conversation is not None else input_items
        if conversation is not None:
            _refuse_unanswered_calls(history)
            user_texts = [_item_text(i) for i in history if _is_user_message(i)]
        else:
            user_texts = (previous.user_texts if previous else []) + input_texts
        tools = [t for t in _opt_list(body, "tools") if isinstance(t, dict)]
        answering = any(i.get("type") == "function_call_output" for i in input_items)
        tool_items, results, waits = (
            ([], [], False) if answering else await self._hosted_mcp(tools, input_items, history)
        )
        if not waits:
            calls, outputs = self._function_calls(tools, input_items, history)
            tool_items += calls
            results += outputs
            waits = bool(calls)
        if conversation is not None:
            conversation.items.extend(input_items)
        outcome = self._next_outcome()
        if outcome in ("expired", "requires_action"):
            outcome = "failed"
        response = FakeResponse(
            id=_new_id("resp", 24),
            model=model,
            created=time.monotonic(),
            lifecycle=self._new_lifecycle(outcome, cancel_delay_s=0.0),
            reply=self.reply(user_texts),
            background=background,
            store=store,
            conversation_id=conversation.id if conversation else None,
            previous_response_id=previous_id,
            instructions=_opt_str(body, "instructions"),
            metadata=_metadata(body),
            tools=[t for t in _opt_list(body, "tools") if isinstance(t, dict)],
            input_items=input_items,
            user_texts=user_texts,
            output_item_id=_new_id("msg", 24),
            tool_items=tool_items,
            waits_for_approval=waits,
        )
        if results:
            response.reply += "\n\n" + "\n".join(results)
        self.responses[response.id] = response
        self._pending_responses[response.id] = response
        if conversation is not None:
            conversation.responses.append(response)
            self._note_concurrency(
                sum(r.status() in ACTIVE_STATUSES for r in conversation.responses)
            )

        if body.get("stream") is True:
            return await self._sse(request, self._response_sse_events(response, None))
        if not background:
            # A foreground request is answered when the model is done.
            await self._until(response.lifecycle, response.lifecycle.ends_at)
            self._settle()
        return web.json_response(self._response_json(response, time.monotonic()))

    def _conversation_param(self, value: object) -> FakeConversation | None:
        if value is None:
            return None
        if isinstance(value, dict):
            value = value.get("id")
        if not isinstance(value, str):
            raise _ApiError(
                400,
                "Invalid type for 'conversation': expected a string or an object.",
                param="conversation",
            )
        return self._conversation(value, param="conversation")

    async def _get_response(self, request: web.Request) -> web.StreamResponse:
        response = self._response(request)
        if request.query.get("stream") == "true":
            after = request.query.get("starting_after")
            try:
                starting_after = None if after is None else int(after)
            except ValueError:
                raise _ApiError(400, "Invalid 'starting_after'.", param="starting_after") from None
            return await self._sse(request, self._response_sse_events(response, starting_after))
        return web.json_response(self._response_json(response, time.monotonic()))

    async def _delete_response(self, request: web.Request) -> web.StreamResponse:
        response = self._response(request)
        del self.responses[response.id]
        return web.json_response({"id": response.id, "object": "response", "deleted": True})

    async def _cancel_response(self, request: web.Request) -> web.StreamResponse:
        response = self._response(request)
        if not response.background:
            raise _ApiError(400, "Only responses created with background=true can be cancelled.")
        now = time.monotonic()
        status = response.status(now)
        if status in TERMINAL_STATUSES and status != "cancelled":
            raise _ApiError(400, f"Cannot cancel a response with status '{status}'.")
        if status != "cancelled":
            response.lifecycle.cancel_requested_at = now
            response.lifecycle.changed.set()
            self._settle()
        return web.json_response(self._response_json(response, now))

    async def _list_input_items(self, request: web.Request) -> web.StreamResponse:
        response = self._response(request)
        page, has_more = _paginate(response.input_items, lambda i: str(i["id"]), request.query)
        return web.json_response(_list_json(page, has_more))

    def _image_blocks(self) -> list[Json]:
        """Threads: an image the assistant made (``image_output``), as a stored file."""
        if self.image_output is None:
            return []
        file_id = _new_id("file", 24)
        self.files[file_id] = {
            "name": "image.png",
            "purpose": "assistants_output",
            "bytes": self.image_output,
        }
        return [{"type": "image_file", "image_file": {"file_id": file_id, "detail": None}}]

    def _image_items(self, status: str) -> list[Json]:
        """Responses: an ``image_generation_call`` output item carrying ``image_output``."""
        if self.image_output is None or status != "completed":
            return []
        result = base64.b64encode(self.image_output).decode()
        return [
            {
                "id": "ig_fake",
                "type": "image_generation_call",
                "status": "completed",
                "result": result,
            }
        ]

    async def _file_content(self, request: web.Request) -> web.StreamResponse:
        file = self.files.get(request.match_info["file_id"])
        if file is None:
            raise _ApiError(404, "No such File object")
        return web.Response(body=file["bytes"], content_type="application/octet-stream")

    def _output_item(self, response: FakeResponse, status: str, text: str | None = None) -> Json:
        if text is None:
            text = response.reply if status == "completed" else _partial(response.reply)
        return {
            "id": response.output_item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [] if status == "in_progress" else [_output_text(text)],
        }

    def _response_json(self, response: FakeResponse, t: float) -> Json:
        """The response as the API shows it at monotonic time ``t``."""
        lifecycle = response.lifecycle
        status = lifecycle.status_at(t)
        if status == "queued" and not response.background:
            status = "in_progress"
        finished_at = lifecycle.finished_at(t)
        message = [] if response.waits_for_approval else [self._output_item(response, status)]
        output = (
            [*response.tool_items, *message, *self._image_items(status)]
            if status in ("completed", "incomplete")
            else []
        )
        text = "".join(_item_text(i) for i in output if i.get("type") == "message")
        tokens = _usage_tokens(response.user_texts, text)
        return {
            "id": response.id,
            "object": "response",
            "created_at": self._wall(response.created),
            "status": status,
            "background": response.background,
            "completed_at": (
                self._wall(finished_at)
                if finished_at is not None and status == "completed"
                else None
            ),
            "conversation": (
                {"id": response.conversation_id} if response.conversation_id else None
            ),
            "error": (
                {"code": "server_error", "message": ERROR_MESSAGE} if status == "failed" else None
            ),
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "instructions": response.instructions,
            "max_output_tokens": None,
            "max_tool_calls": None,
            "metadata": response.metadata,
            "model": response.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": response.previous_response_id,
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": response.store,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": response.tools,
            "top_logprobs": 0,
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": (
                {
                    "input_tokens": tokens[0],
                    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                    "output_tokens": tokens[1],
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": sum(tokens),
                }
                if output
                else None
            ),
            "user": None,
        }

    async def _response_sse_events(
        self, response: FakeResponse, starting_after: int | None
    ) -> AsyncIterator[tuple[str, Json | str]]:
        """Number the events of a response; skip those up to ``starting_after`` (resume)."""
        sequence_number = 0
        async for event in self._response_events(response):
            event["sequence_number"] = sequence_number
            if starting_after is None or sequence_number > starting_after:
                yield str(event["type"]), event
            sequence_number += 1

    async def _response_events(self, response: FakeResponse) -> AsyncIterator[Json]:
        """The events of a response, each at its moment on the timeline.

        Deterministic for a given response, so a replay (GET ?stream=true) yields the same
        events with the same sequence numbers. A cancelled response's stream just ends,
        as the SDK has no event type for cancellation.
        """
        lifecycle = response.lifecycle
        snapshot = self._response_json
        yield {"type": "response.created", "response": snapshot(response, lifecycle.start)}
        if response.background:
            yield {"type": "response.queued", "response": snapshot(response, lifecycle.start)}
        if not await self._until(lifecycle, lifecycle.in_progress_at):
            return
        yield {
            "type": "response.in_progress",
            "response": snapshot(response, lifecycle.in_progress_at),
        }

        outcome = lifecycle.outcome
        text = {"completed": response.reply, "incomplete": _partial(response.reply)}.get(outcome)
        if response.waits_for_approval:
            text = None
        first = len(response.tool_items)
        where = {"item_id": response.output_item_id, "output_index": first, "content_index": 0}
        for index, item in enumerate(response.tool_items):
            # Each hosted tool call: announced, then done, within the first part of the run.
            at = lifecycle.in_progress_at + lifecycle.run_s * index / (2 * first)
            if not await self._until(lifecycle, at):
                return
            added = {**item, "status": "in_progress", "output": None, "error": None}
            if item["type"] in ("mcp_list_tools", "mcp_approval_request"):
                added = item
            elif item["type"] == "function_call":
                added = {**item, "status": "in_progress", "arguments": ""}
            yield {"type": "response.output_item.added", "output_index": index, "item": added}
            yield {"type": "response.output_item.done", "output_index": index, "item": item}
        if text is not None:
            yield {
                "type": "response.output_item.added",
                "output_index": first,
                "item": self._output_item(response, "in_progress"),
            }
            yield {"type": "response.content_part.added", **where, "part": _output_text("")}
            chunks = _chunks(text, self.stream_chunks)
            for i, chunk in enumerate(chunks):
                at = lifecycle.in_progress_at + lifecycle.run_s * i / len(chunks)
                if not await self._until(lifecycle, at):
                    return
                yield {
                    "type": "response.output_text.delta",
                    **where,
                    "delta": chunk,
                    "logprobs": [],
                }

        if not await self._until(lifecycle, lifecycle.ends_at):
            return
        self._settle()
        ends_at = cast(float, lifecycle.ends_at)
        if text is not None:
            yield {"type": "response.output_text.done", **where, "text": text, "logprobs": []}
            yield {"type": "response.content_part.done", **where, "part": _output_text(text)}
            yield {
                "type": "response.output_item.done",
                "output_index": first,
                "item": self._output_item(response, outcome),
            }
        if outcome in ("completed", "failed", "incomplete"):
            yield {"type": f"response.{outcome}", "response": snapshot(response, ends_at)}

    async def _hosted_mcp(
        self, tools: list[Json], input_items: list[Json], history: list[Json]
    ) -> tuple[list[Json], list[str], bool]:
        """What OpenAI does with remote ``mcp`` tools, done for real against the server:
        list its tools (a server that cannot be listed fails the request with 424, as the
        API does), then call those ``tool_requests`` names, or ask for approval first where
        ``require_approval`` says so. An ``mcp_approval_response`` in the input answers an
        earlier request (found in ``history``). Returns (output items, tool results, waits)."""
        items: list[Json] = []
        results: list[str] = []
        answers = {
            str(i.get("approval_request_id")): i.get("approve") is True
            for i in input_items
            if i.get("type") == "mcp_approval_response"
        }
        requests = {str(i.get("id")): i for i in history if i.get("type") == "mcp_approval_request"}
        for request_id, approved in answers.items():
            asked = requests.get(request_id)
            if asked is None:
                raise _ApiError(400, f"No approval request found with id '{request_id}'.")
            server = next(
                (t for t in tools if t.get("server_label") == asked["server_label"]), None
            )
            if server is None:
                raise _ApiError(400, "The approved call's MCP server is not in 'tools'.")
            if approved:
                items.append(await self._mcp_call(server, asked["name"], asked["arguments"]))
                results.append(str(items[-1].get("output") or items[-1].get("error")))
            else:
                results.append(f"The user denied the call of {asked['name']}.")
        if answers:
            return items, results, False
        for tool in tools:
            if tool.get("type") != "mcp":
                continue
            label, url = str(tool.get("server_label")), str(tool.get("server_url"))
            try:
                listed = await _mcp_list(url, tool.get("headers") or {})
            except Exception as exc:
                raise _ApiError(
                    424,
                    f"Error retrieving tool list from MCP server: '{label}'. "
                    "Http status code: 424 (Failed Dependency)",
                    code="http_error",
                ) from exc
            allowed = tool.get("allowed_tools")
            names = [n for n in listed if allowed is None or n in allowed]
            items.append(
                {
                    "id": _new_id("mcpl"),
                    "type": "mcp_list_tools",
                    "server_label": label,
                    "tools": [{"name": n, "input_schema": {}} for n in names],
                    "error": None,
                }
            )
            for name, arguments in self.tool_requests:
                if name not in names:
                    continue
                if _mcp_needs_approval(tool.get("require_approval"), name):
                    items.append(
                        {
                            "id": _new_id("mcpr"),
                            "type": "mcp_approval_request",
                            "server_label": label,
                            "name": name,
                            "arguments": json.dumps(arguments),
                        }
                    )
                    return items, [], True
                items.append(await self._mcp_call(tool, name, json.dumps(arguments)))
                results.append(str(items[-1].get("output") or items[-1].get("error")))
        return items, results, False

    def _function_calls(
        self, tools: list[Json], input_items: list[Json], history: list[Json]
    ) -> tuple[list[Json], list[str]]:
        """Function tools, as the Responses API treats them: the model asks for the offered
        functions named in ``tool_requests`` (``function_call`` output items, no message);
        the client runs them and sends ``function_call_output`` items in a new response,
        each answering a call in the conversation (400 otherwise). Returns (calls, the
        outputs given back, which the reply then shows)."""
        outputs = [i for i in input_items if i.get("type") == "function_call_output"]
        if outputs:
            asked = {str(i.get("call_id")) for i in history if i.get("type") == "function_call"}
            for output in outputs:
                if str(output.get("call_id")) not in asked:
                    raise _ApiError(
                        400,
                        "No tool call found for function call output with call_id "
                        f"{output.get('call_id')}.",
                        param="input",
                    )
            return [], [str(output.get("output")) for output in outputs]
        offered = [str(t.get("name")) for t in tools if t.get("type") == "function"]
        for tool in tools:
            if tool.get("type") == "function" and not re.fullmatch(
                r"[A-Za-z0-9_-]{1,64}", str(tool.get("name"))
            ):
                raise _ApiError(400, "Invalid 'tools': bad function name.", param="tools")
        calls = []
        for name, arguments in self.tool_requests:
            match = next((o for o in offered if o == name or o.endswith(f"__{name}")), None)
            if match is not None:
                calls.append(
                    {
                        "id": _new_id("fc", 24),
                        "type": "function_call",
                        "call_id": _new_id("call"),
                        "name": match,
                        "arguments": json.dumps(arguments),
                        "status": "completed",
                    }
                )
        return calls, []

    async def _mcp_call(self, tool: Json, name: str, arguments: str) -> Json:
        output, error = await _mcp_call(
            str(tool.get("server_url")), tool.get("headers") or {}, name, json.loads(arguments)
        )
        return {
            "id": _new_id("mcp"),
            "type": "mcp_call",
            "server_label": tool.get("server_label"),
            "name": name,
            "arguments": arguments,
            "output": output,
            "error": error,
            "status": "completed" if error is None else "failed",
        }

    # ----------------------------------------------------------------- Chat Completions

    async def _chat_completion(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions`` (and Azure's deployment path): stateless; the
        conversation is the request's ``messages``. Answered when the model is done (plain
        JSON, sent in chunks) or as it writes (``stream``: SSE chunks, then ``[DONE]``)."""
        body: Json = request[_BODY]
        model = request.match_info.get("deployment") or _required_str(body, "model")
        messages = _opt_list(body, "messages")
        if not messages or not all(
            isinstance(m, dict) and m.get("role") in _CHAT_ROLES for m in messages
        ):
            raise _ApiError(
                400, "Invalid 'messages': expected an array of messages.", param="messages"
            )
        size = sum(len(_chat_text(m)) for m in messages)
        if self.context_chars is not None and size > self.context_chars:
            raise _ApiError(
                400,
                f"This model's maximum context length is {self.context_chars // 4} tokens. "
                f"However, your messages resulted in {size // 4} tokens. Please reduce the "
                "length of the messages.",
                param="messages",
                code="context_length_exceeded",
            )
        offered = _chat_tools(body)
        _check_tool_messages(messages)
        outcome = self._next_outcome()
        completion = FakeChatCompletion(
            id=_new_id("chatcmpl", 16),
            model=model,
            messages=messages,
            stream=body.get("stream") is True,
            reply="",
            lifecycle=self._new_lifecycle(outcome, cancel_delay_s=0.0),
            tools=offered,
        )
        results = _tool_results_since_user(messages)
        completion.tool_calls = [] if results else self._wanted_calls(offered)
        completion.reply = self.reply(completion.user_texts)
        if results:
            completion.reply += "\n\n" + "\n".join(results)
        self.chat_completions.append(completion)
        first_user = next(iter(completion.user_texts), "")
        self._note_concurrency(
            sum(
                1
                for c in self.chat_completions
                if c.lifecycle.status_at(time.monotonic()) in ACTIVE_STATUSES
                and next(iter(c.user_texts), "") == first_user
            )
        )
        if outcome == "failed" and not completion.stream:
            raise _ApiError(
                500,
                "The server had an error while processing your request.",
                type="server_error",
                code="server_error",
            )
        if completion.stream:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return await self._chat_sse(request, completion, include_usage=usage)
        if not await self._while_client_waits(request, completion.lifecycle):
            return web.Response(status=CLIENT_GONE)
        return await _chunked_json(request, self._chat_json(completion))

    async def _while_client_waits(
        self, request: web.Request, lifecycle: _Lifecycle, deadline: float | None = None
    ) -> bool:
        """Sleep until ``deadline`` (default: the model is done; None for a stuck one: for
        ever); False if the client hung up first (recorded as 499) or the fake stops."""
        if deadline is None:
            deadline = lifecycle.ends_at
        while deadline is None or time.monotonic() < deadline:
            transport = request.transport
            if self._closing or transport is None or transport.is_closing():
                request[_RECORD].status = CLIENT_GONE
                return False
            remaining = 0.02 if deadline is None else deadline - time.monotonic()
            await asyncio.sleep(max(0.0, min(0.02, remaining)))
        self._settle()
        self._chat_done(lifecycle)
        return True

    def _chat_done(self, lifecycle: _Lifecycle) -> None:
        for completion in self.chat_completions:
            ends_at = lifecycle.ends_at
            if (
                completion.lifecycle is lifecycle
                and lifecycle.outcome == "completed"
                and ends_at is not None
                and time.monotonic() >= ends_at
            ):
                self.completed_at[completion.id] = ends_at

    def _wanted_calls(self, offered: Sequence[str]) -> list[Json]:
        calls = []
        for name, arguments in self.tool_requests:
            match = next((o for o in offered if o == name or o.endswith(f"__{name}")), None)
            if match is not None:
                calls.append(
                    {
                        "id": _new_id("call"),
                        "type": "function",
                        "function": {"name": match, "arguments": json.dumps(arguments)},
                    }
                )
        return calls

    def _chat_text_of(self, completion: FakeChatCompletion) -> tuple[str, str]:
        """(text, finish_reason) the completion ends with."""
        if completion.tool_calls:
            return "", "tool_calls"
        if completion.lifecycle.outcome == "incomplete":
            return _partial(completion.reply), "length"
        return completion.reply, "stop"

    def _chat_usage(self, completion: FakeChatCompletion, text: str) -> Json:
        prompt, output = _usage_tokens((_chat_text(m) for m in completion.messages), text)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def _chat_json(self, completion: FakeChatCompletion) -> Json:
        text, finish_reason = self._chat_text_of(completion)
        return {
            "id": completion.id,
            "object": "chat.completion",
            "created": self._wall(completion.lifecycle.start),
            "model": completion.model,
            "system_fingerprint": "fp_fake",
            "service_tier": "default",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text or None,
                        "refusal": None,
                        "annotations": [],
                        **({"tool_calls": completion.tool_calls} if completion.tool_calls else {}),
                    },
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": self._chat_usage(completion, text),
        }

    async def _chat_sse(
        self, request: web.Request, completion: FakeChatCompletion, *, include_usage: bool
    ) -> web.StreamResponse:
        """The chunks of a streamed completion, each at its moment on the timeline."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": _new_id("req"),
            }
        )
        await response.prepare(request)
        lifecycle = completion.lifecycle
        text, finish_reason = self._chat_text_of(completion)

        def chunk(choices: list[Json], usage: Json | None = None) -> bytes:
            data: Json = {
                "id": completion.id,
                "object": "chat.completion.chunk",
                "created": self._wall(lifecycle.start),
                "model": completion.model,
                "system_fingerprint": "fp_fake",
                "service_tier": "default",
                "choices": choices,
            }
            if include_usage:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n".encode()

        def delta(content: Json, finish: str | None = None) -> Json:
            return {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}

        try:
            await response.write(chunk([delta({"role": "assistant", "content": ""})]))
            pieces = _chunks(text, self.stream_chunks)
            for i, piece in enumerate(pieces):
                at = lifecycle.in_progress_at + lifecycle.run_s * i / len(pieces)
                if not await self._while_client_waits(request, lifecycle, at):
                    return response
                if lifecycle.outcome == "failed" and i == len(pieces) // 2:
                    error = {
                        "message": ERROR_MESSAGE,
                        "type": "server_error",
                        "param": None,
                        "code": "server_error",
                    }
                    await response.write(f"data: {json.dumps({'error': error})}\n\n".encode())
                    await response.write_eof()
                    return response
                await response.write(chunk([delta({"content": piece})]))
            for index, call in enumerate(completion.tool_calls):
                # As the real API streams them: the id and name first, then the arguments
                # in pieces, each delta naming the call by its index.
                head = {"index": index, "id": call["id"], "type": "function"}
                head["function"] = {"name": call["function"]["name"], "arguments": ""}
                await response.write(chunk([delta({"tool_calls": [head]})]))
                for piece in _chunks(call["function"]["arguments"], 3):
                    more = {"index": index, "function": {"arguments": piece}}
                    await response.write(chunk([delta({"tool_calls": [more]})]))
            if not await self._while_client_waits(request, lifecycle):
                return response
            await response.write(chunk([delta({}, finish_reason)]))
            if include_usage:
                await response.write(chunk([], self._chat_usage(completion, text)))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            request[_RECORD].status = CLIENT_GONE
        return response


# --------------------------------------------------------------------------- helpers


def _new_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}_{secrets.token_hex(nbytes)}"


def _decode_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _injected_error(failure: _InjectedFailure) -> web.Response:
    status = failure.status
    if status == 429:
        error = _ApiError(
            429,
            "Rate limit reached for requests. Please try again later.",
            type="requests",
            code="rate_limit_exceeded",
        )
    elif status >= 500:
        error = _ApiError(
            status,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        )
    else:
        error = _ApiError(status, f"Injected error (HTTP {status}).")
    headers: dict[str, str] = {}
    if failure.retry_after is not None:
        headers["retry-after"] = f"{failure.retry_after:g}"
        headers["retry-after-ms"] = str(round(failure.retry_after * 1000))
    return web.json_response(error.body, status=status, headers=headers)


def _opt_str(body: Json, key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _ApiError(400, f"Invalid type for '{key}': expected a string.", param=key)
    return value


def _required_str(body: Json, key: str) -> str:
    value = _opt_str(body, key)
    if not value:
        raise _ApiError(
            400,
            f"Missing required parameter: '{key}'.",
            param=key,
            code="missing_required_parameter",
        )
    return value


def _opt_list(body: Json, key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _ApiError(400, f"Invalid type for '{key}': expected an array.", param=key)
    return value


def _metadata(body: Json) -> dict[str, str]:
    value = body.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _ApiError(
            400, "Invalid type for 'metadata': expected an object of strings.", param="metadata"
        )
    return {str(k): str(v) for k, v in value.items()}


def _paginate(
    items: Sequence[_T], key: Callable[[_T], str], query: Mapping[str, str]
) -> tuple[list[_T], bool]:
    """Cursor pagination as the API does it: order (default desc), after, before, limit."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise _ApiError(400, f"Invalid value for 'order': '{order}'.", param="order")
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        raise _ApiError(400, "Invalid 'limit': expected an integer.", param="limit") from None
    if not 1 <= limit <= 100:
        raise _ApiError(400, "Invalid 'limit': must be between 1 and 100.", param="limit")
    ordered = list(items) if order == "asc" else list(reversed(items))
    ids = [key(i) for i in ordered]
    if (after := query.get("after")) is not None:
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        ids = [key(i) for i in ordered]
    if (before := query.get("before")) is not None:
        ordered = ordered[: ids.index(before)] if before in ids else []
    return ordered[:limit], len(ordered) > limit


def _list_json(data: Iterable[Json], has_more: bool) -> Json:
    items = list(data)
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


_FILE_MARKER = re.compile(r"【[^【】]*†([^【】]*)】")
_MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")


def _text_block(text: str) -> Json:
    """A thread message's text; each file-search marker carries a file_citation, as in the API."""
    annotations = [
        {
            "type": "file_citation",
            "text": match.group(0),
            "start_index": match.start(),
            "end_index": match.end(),
            "file_citation": {"file_id": f"file-{match.group(1)}"},
        }
        for match in _FILE_MARKER.finditer(text)
    ]
    return {"type": "text", "text": {"value": text, "annotations": annotations}}


def _output_text(text: str) -> Json:
    """A response's text; each Markdown link carries a url_citation, as web search gives."""
    annotations = [
        {
            "type": "url_citation",
            "title": match.group(1),
            "url": match.group(2),
            "start_index": match.start(),
            "end_index": match.end(),
        }
        for match in _MARKDOWN_LINK.finditer(text)
    ]
    return {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}


def _partial(text: str) -> str:
    """What an ``incomplete`` run/response managed to say: the first half."""
    return text[: len(text) // 2]


def _chunks(text: str, count: int) -> list[str]:
    """Split ``text`` into at most ``count`` consecutive pieces of similar length."""
    if not text:
        return []
    count = max(1, min(count, len(text)))
    bounds = [round(i * len(text) / count) for i in range(count + 1)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def _usage_tokens(prompt_texts: Iterable[str], completion: str) -> tuple[int, int]:
    """A rough token count (~4 characters a token), enough for plausible usage numbers."""
    prompt = sum(len(t) for t in prompt_texts)
    return max(1, prompt // 4), max(1, len(completion) // 4)


def _parse_message_param(value: object) -> tuple[str, list[Json], dict[str, str]]:
    """Validate a thread message param; return (role, content blocks, metadata)."""
    if not isinstance(value, dict):
        raise _ApiError(400, "Invalid message: expected an object.", param="messages")
    role = value.get("role")
    if role not in ("user", "assistant"):
        raise _ApiError(
            400,
            f"Invalid value: '{role}'. Supported values are: 'user' and 'assistant'.",
            param="role",
        )
    content = value.get("content")
    blocks: list[Json] = []
    if isinstance(content, str):
        blocks.append(_text_block(content))
    elif isinstance(content, list):
        for part in content:
            blocks.append(_content_block(part))
    else:
        raise _ApiError(400, "Missing required parameter: 'content'.", param="content")
    if not blocks or all(b["type"] == "text" and not b["text"]["value"] for b in blocks):
        raise _ApiError(400, "Message content must be non-empty.", param="content")
    return str(role), blocks, _metadata(value)


def _content_block(part: object) -> Json:
    """A message content part param → the content block the API stores."""
    kind = part.get("type") if isinstance(part, dict) else None
    if isinstance(part, dict) and kind == "text" and isinstance(part.get("text"), str):
        return _text_block(part["text"])
    if isinstance(part, dict) and kind == "image_url" and isinstance(part.get("image_url"), dict):
        image = part["image_url"]
        return {
            "type": "image_url",
            "image_url": {"url": str(image.get("url")), "detail": image.get("detail", "auto")},
        }
    if isinstance(part, dict) and kind == "image_file" and isinstance(part.get("image_file"), dict):
        image = part["image_file"]
        return {
            "type": "image_file",
            "image_file": {
                "file_id": str(image.get("file_id")),
                "detail": image.get("detail", "auto"),
            },
        }
    raise _ApiError(400, f"Invalid content part type: '{kind}'.", param="content")


def _parse_input(value: object) -> list[Json]:
    """The ``input`` of a response: a string (one user message) or a list of input items."""
    if value is None:
        return []
    if isinstance(value, str):
        return [_parse_input_item({"role": "user", "content": value})]
    if isinstance(value, list):
        return [_parse_input_item(item) for item in value]
    raise _ApiError(400, "Invalid type for 'input': expected a string or an array.", param="input")


def _parse_input_item(value: object) -> Json:
    """An input item param → the item as stored in a conversation (with an id)."""
    if not isinstance(value, dict):
        raise _ApiError(400, "Invalid input item: expected an object.", param="input")
    kind = value.get("type", "message")
    if kind != "message":
        return {"id": _new_id("item", 24), **value}
    role = value.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise _ApiError(
            400,
            f"Invalid value: '{role}'. Supported values are: 'assistant', 'system', "
            "'developer', and 'user'.",
            param="input.role",
        )
    content = value.get("content")
    if isinstance(content, str):
        parts = [
            _output_text(content)
            if role == "assistant"
            else {"type": "input_text", "text": content}
        ]
    elif isinstance(content, list):
        parts = [_input_part(part) for part in content]
    else:
        raise _ApiError(400, "Missing required parameter: 'input.content'.", param="input.content")
    return {
        "id": value.get("id") or _new_id("msg", 24),
        "type": "message",
        "role": role,
        "status": "completed",
        "content": parts,
    }


def _input_part(part: object) -> Json:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise _ApiError(
            400, "Invalid content part: expected an object with a 'type'.", param="input"
        )
    kind = part["type"]
    if kind == "input_text":
        return {"type": "input_text", "text": str(part.get("text", ""))}
    if kind == "input_image":
        return {
            "type": "input_image",
            "image_url": part.get("image_url"),
            "file_id": part.get("file_id"),
            "detail": part.get("detail", "auto"),
        }
    if kind == "output_text":
        return _output_text(str(part.get("text", "")))
    return dict(part)


def _item_text(item: Json) -> str:
    """The text of a message item (its text parts joined by newlines)."""
    return "\n".join(
        str(part["text"])
        for part in item.get("content") or []
        if part.get("type") in ("input_text", "output_text", "text")
    )


def _refuse_unanswered_calls(items: list[Json]) -> None:
    """A conversation (with the new input) holding a ``function_call`` that no
    ``function_call_output`` answers is refused, as the Responses API refuses it: the model
    cannot go on past a call whose result it never got."""
    answered = {str(i.get("call_id")) for i in items if i.get("type") == "function_call_output"}
    for item in items:
        if item.get("type") == "function_call" and str(item.get("call_id")) not in answered:
            raise _ApiError(
                400, f"No tool output found for function call {item.get('call_id')}.", param="input"
            )


def _is_user_message(item: Json) -> bool:
    return item.get("type") == "message" and item.get("role") == "user"


def _multipart_fields(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """Form fields of a multipart body: name → (filename or "", raw bytes)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        fields[str(name)] = (str(part.get_filename() or ""), payload)
    return fields


_CHAT_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool"})


def _mcp_session(url: str, headers: Mapping[str, str]) -> Any:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    http = create_mcp_http_client(headers=dict(headers))
    return http, Client(streamable_http_client(url, http_client=http))


async def _mcp_list(url: str, headers: Mapping[str, str]) -> list[str]:
    http, client = _mcp_session(url, headers)
    try:
        async with client:
            return [tool.name for tool in (await client.list_tools()).tools]
    finally:
        await http.aclose()


async def _mcp_call(
    url: str, headers: Mapping[str, str], name: str, arguments: Json
) -> tuple[str | None, str | None]:
    """(output, error) of one call, as a hosted mcp_call item reports it."""
    http, client = _mcp_session(url, headers)
    try:
        async with client:
            result = await client.call_tool(name, arguments)
    finally:
        await http.aclose()
    text = "\n".join(getattr(block, "text", "") for block in result.content)
    return (None, text) if result.is_error else (text, None)


def _mcp_needs_approval(setting: object, name: str) -> bool:
    if setting == "never":
        return False
    if isinstance(setting, dict):
        always = setting.get("always")
        names = always.get("tool_names") if isinstance(always, dict) else None
        return isinstance(names, list) and name in names
    return True  # "always", or unset: the API's default asks


def _chat_tools(body: Json) -> list[str]:
    """The function names a Chat Completions request offers (400 for a malformed tool)."""
    names = []
    for tool in _opt_list(body, "tools"):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or tool.get("type") != "function":
            raise _ApiError(400, "Invalid 'tools': expected function tools.", param="tools")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise _ApiError(400, f"Invalid 'tools': bad function name {name!r}.", param="tools")
        names.append(name)
    return names


def _check_tool_messages(messages: list[Json]) -> None:
    """As the real API: every tool message answers a call of the assistant message before it."""
    asked: set[str] = set()
    for message in messages:
        if message.get("role") == "assistant":
            asked = {str(c.get("id")) for c in message.get("tool_calls") or []}
        elif message.get("role") == "tool" and message.get("tool_call_id") not in asked:
            raise _ApiError(
                400,
                "Invalid parameter: messages with role 'tool' must be a response to a "
                "preceeding message with 'tool_calls'.",
                param="messages",
            )


def _tool_results_since_user(messages: list[Json]) -> list[str]:
    results: list[str] = []
    for message in messages:
        if message.get("role") == "user":
            results = []
        elif message.get("role") == "tool":
            results.append(_chat_text(message))
    return results


def _chat_text(message: Json) -> str:
    """The text of a chat message (its text parts joined by newlines)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


async def _chunked_json(request: web.Request, data: Json) -> web.StreamResponse:
    """A JSON body sent with chunked transfer encoding, in several writes, as a proxy or a
    slow server sends it."""
    response = web.StreamResponse(
        headers={"Content-Type": "application/json", "x-request-id": _new_id("req")}
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    raw = json.dumps(data).encode()
    for piece in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
        await response.write(piece)
    await response.write_eof()
    return response
