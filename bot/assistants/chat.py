"""OpenAI's Chat Completions API (or any server that speaks it): the bot is the thread.

Chat Completions keeps no state, so this backend keeps each thread's messages in the bot's
own database (`bot/store/chat_models.py`) and sends the conversation on every turn, as much
of it as fits the model's window (`bot/assistants/context.py`).

A turn is a local run: its user message is stored first (once per turn key), the completion
runs as an asyncio task in this process, and the answer is stored when the model finishes,
in the one transaction that marks the run done. So:

- a crash after the answer is stored posts the stored answer (the model is not asked again);
- a crash before it is stored leaves a user message with no answer and no task: whoever
  checks the run next asks the model again. The model may be called twice; the answer is
  stored, and therefore posted, once (the first stored answer wins).

The request is sent (and its HTTP status known) before `start_run` returns or `stream_run`
yields the run id, so an API that is down or refuses the turn is reported where the service
retries or explains it. Answers are always streamed from the API (the read timeout then
applies between chunks, not to the whole answer); poll delivery simply reads them in the
background. Only the newest question carries its images: earlier ones are sent as text, so a
model without vision refuses one turn, not every later one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import undefer

from bot.assistants.base import (
    NO_OPTIONS,
    ApprovalRequest,
    AssistantRejected,
    AssistantUnavailable,
    ProgressSink,
    RunCheck,
    RunState,
    StreamDelta,
    StreamEvent,
    StreamStarted,
    ToolContext,
    ToolProgress,
    ToolStatus,
    TurnOptions,
    Usage,
    joined_instructions,
    server_down,
)
from bot.assistants.context import (
    CUT_NOTE,
    IMAGE_TOKENS,
    Entry,
    context_budget,
    cut_text,
    estimate_tokens,
    newest_fitting,
    plan_context,
    summary_room,
)
from bot.assistants.errors import translated_errors
from bot.assistants.tool_calls import CallResult, CallStep, RequestedCall, TurnTools, run_call
from bot.attachments import Image, image_data_url
from bot.store.chat_models import ChatMessage, ChatSummary
from bot.tools.mcp_client import EMPTY_CATALOG, Catalog, McpTools

log = logging.getLogger(__name__)

RUN_PREFIX = "chatrun:"
CONTEXT_TOO_LONG = "context_length_exceeded"
SUMMARY_PROMPT = (
    "Summarise the conversation below for your own later reference, in at most 200 words: "
    "who asked what, the facts, names, numbers and decisions that matter, and open questions. "
    "Write only the summary."
)
SUMMARY_HEADING = "Summary of the earlier part of this conversation (older messages are not shown):"
_FINISH_STATES = {
    "stop": RunState.COMPLETED,
    "length": RunState.INCOMPLETE,
    "tool_calls": RunState.REQUIRES_ACTION,
    "function_call": RunState.REQUIRES_ACTION,
    "content_filter": RunState.FAILED,
}
_STORED_STATES = {RunState.COMPLETED, RunState.INCOMPLETE}


@dataclass(frozen=True)
class _Question:
    """A turn's stored user message and what it needs to be asked (again)."""

    seq: int
    text: str
    images: tuple[str, ...]
    model: str | None
    instructions: str | None
    mcp_servers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Opened:
    """A turn's request, sent: the answer streams in from `stream`."""

    stream: AsyncStream[ChatCompletionChunk]
    cut: bool
    model: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    catalog: Catalog = EMPTY_CATALOG
    servers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Reply:
    state: RunState
    text: str
    usage: Usage | None
    tool_calls: tuple[RequestedCall, ...] = ()


@dataclass
class _Loop:
    """A turn's tool-call loop as it stands: stored with an approval request."""

    model: str
    messages: list[dict[str, Any]]
    cut: bool = False
    pending: list[dict[str, str]] = field(default_factory=list)
    """Calls of the model's last reply not yet answered (the first waits for approval)."""
    tools: TurnTools = field(default_factory=TurnTools)

    def dump(self) -> str:
        loop = {"model": self.model, "messages": self.messages, "cut": self.cut}
        return json.dumps({**loop, "pending": self.pending, **self.tools.stored()})

    @classmethod
    def load(cls, state: str, context: ToolContext | None) -> _Loop:
        try:
            stored = json.loads(state)
            tools = TurnTools.from_stored(stored, context)
            return cls(stored["model"], stored["messages"], stored["cut"], stored["pending"], tools)
        except (ValueError, TypeError, KeyError) as exc:
            raise AssistantRejected("chat: the stored tool-call state is unreadable") from exc


Progress = asyncio.Queue[str | ToolProgress]
"""What a streamed turn shows as it goes: answer text, and tool calls as they run."""


class _ContextTooLong(Exception):
    """The server said the request exceeds the model's window."""


class ChatBackend:
    name = "chat"

    def __init__(
        self,
        client: AsyncOpenAI,
        engine: AsyncEngine,
        *,
        model: str,
        instructions: str | None = None,
        context_tokens: int | None = None,
        completion_timeout_s: float = 120.0,
        tools: McpTools | None = None,
        max_tool_calls: int = 8,
    ) -> None:
        self._tools = tools if tools is not None and tools.configured else None
        self._max_tool_calls = max_tool_calls
        self._contexts: dict[str, ToolContext] = {}
        self._activity: dict[str, ToolProgress] = {}
        """Turn key → its newest tool call update, for polled delivery (`check_run`)."""
        """Turn key → what its own tools act with (held in memory only)."""
        self._client = client
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._model = model
        self._instructions = instructions
        self._context_tokens = context_tokens
        self._completion_timeout_s = completion_timeout_s
        self._tasks: dict[str, asyncio.Task[RunCheck]] = {}
        self._unreached: set[str] = set()

    # The Protocol -------------------------------------------------------------------

    async def create_thread(self, *, metadata: dict[str, str]) -> str:
        return f"chat_{uuid.uuid4().hex}"

    async def start_run(
        self,
        *,
        thread_id: str,
        text: str,
        turn_key: str,
        images: Sequence[Image] = (),
        options: TurnOptions = NO_OPTIONS,
    ) -> str:
        """Store the question and send it; the answer is read (and stored) by a task.

        The request is sent before this returns, so an API that refuses it or cannot be
        reached is reported here, as other backends report a run that cannot be created.
        """
        self._remember_context(turn_key, options)
        await self._store_question(thread_id, turn_key, text, images, options)
        opened = await self._opening(thread_id, turn_key)
        self._tasks[turn_key] = asyncio.create_task(self._read(thread_id, turn_key, opened, None))
        return RUN_PREFIX + turn_key

    async def find_run(
        self, *, thread_id: str, turn_key: str, text: str, previous_run_id: str | None
    ) -> str | None:
        """The run a crashed attempt of this turn started: its question is stored.

        Not when this process's own last attempt could not reach the model: then the turn
        is started again, so an API that stays down is reported as such.
        """
        if turn_key in self._unreached:
            return None
        async with self._sessions() as session:
            stored = await session.scalar(
                _row(thread_id, turn_key, "user").with_only_columns(ChatMessage.id)
            )
        return None if stored is None else RUN_PREFIX + turn_key

    async def check_run(
        self, *, thread_id: str, run_id: str, progress: ProgressSink | None = None
    ) -> RunCheck:
        turn_key = run_id.removeprefix(RUN_PREFIX)
        task = self._tasks.get(turn_key)
        if task is not None and not task.done():
            activity = self._activity.pop(turn_key, None)
            if activity is not None and progress is not None:
                await progress(activity)
            return RunCheck(RunState.IN_PROGRESS)
        self._activity.pop(turn_key, None)
        if task is not None:
            del self._tasks[turn_key]
            if not task.cancelled():
                error = task.exception()
                if error is None:
                    return task.result()
                if isinstance(error, AssistantRejected):
                    return RunCheck(RunState.FAILED, detail=str(error))
                log.warning("chat run %s failed (%s); asking again", turn_key, error)
        answer = await self._stored_answer(thread_id, turn_key)
        if answer is not None:
            return answer
        if (
            await self.find_run(
                thread_id=thread_id, turn_key=turn_key, text="", previous_run_id=None
            )
            is None
        ):
            return RunCheck(RunState.FAILED, detail="the turn's question was never stored")
        # Started by a process that is gone (or failed here): ask the model again.
        self._tasks[turn_key] = asyncio.create_task(self._answer(thread_id, turn_key))
        return RunCheck(RunState.IN_PROGRESS)

    async def cancel_run(self, *, thread_id: str, run_id: str) -> Usage | None:
        task = self._tasks.pop(run_id.removeprefix(RUN_PREFIX), None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return None

    def forget(self, turn_key: str) -> None:
        self._contexts.pop(turn_key, None)
        self._activity.pop(turn_key, None)
        task = self._tasks.pop(turn_key, None)
        if task is not None and not task.done():
            task.cancel()  # the turn is over here, or another process carries it on

    async def stream_run(
        self,
        *,
        thread_id: str,
        text: str,
        turn_key: str,
        images: Sequence[Image] = (),
        options: TurnOptions = NO_OPTIONS,
    ) -> AsyncIterator[StreamEvent]:
        """Store the question, then stream the answer as the model writes it.

        The completion runs as a task of its own: if the caller stops listening (a deadline,
        a broken Slack stream), it carries on, and `check_run` finds it.
        """
        self._remember_context(turn_key, options)
        await self._store_question(thread_id, turn_key, text, images, options)
        opened = await self._opening(thread_id, turn_key)
        yield StreamStarted(RUN_PREFIX + turn_key)
        deltas: Progress = asyncio.Queue()
        task = asyncio.create_task(self._read(thread_id, turn_key, opened, deltas))
        self._tasks[turn_key] = task
        getter: asyncio.Future[str | ToolProgress] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(deltas.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    break
                yield _event(getter.result())
            while not deltas.empty():
                yield _event(deltas.get_nowait())
            try:
                result = await asyncio.shield(task)
            finally:
                if self._tasks.get(turn_key) is task:
                    del self._tasks[turn_key]
            yield result
        finally:
            if getter is not None and not getter.done():
                getter.cancel()

    async def produced_files(self, *, thread_id: str, run_id: str) -> list[Image]:
        return []

    async def delete_thread(self, thread_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(ChatMessage).where(ChatMessage.thread_id == thread_id))
            await session.execute(delete(ChatSummary).where(ChatSummary.thread_id == thread_id))

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        await self._client.close()

    # A turn ---------------------------------------------------------------------------

    async def _answer(self, thread_id: str, turn_key: str) -> RunCheck:
        """Ask (again) for a turn whose question is stored: send it, read the answer."""
        return await self._read(thread_id, turn_key, await self._opening(thread_id, turn_key), None)

    async def _opening(self, thread_id: str, turn_key: str) -> _Opened | RunCheck:
        try:
            opened = await self._open(thread_id, turn_key)
        except AssistantUnavailable:
            self._unreached.add(turn_key)
            raise
        self._unreached.discard(turn_key)
        return opened

    async def _open(self, thread_id: str, turn_key: str) -> _Opened | RunCheck:
        """Send the turn (what fits of the thread, then its question) as a streamed request.

        A stored answer is the result already. A request the server finds too long for the
        model is sent once more with half the budget; then the turn ends TOO_LONG.
        """
        stored = await self._stored_answer(thread_id, turn_key)
        if stored is not None:
            return stored
        question = await self._question(thread_id, turn_key)
        model = question.model or self._model
        budget = context_budget(model, self._context_tokens)
        catalog = EMPTY_CATALOG
        if self._tools is not None:
            catalog = await self._tools.catalog(self._contexts.get(turn_key), question.mcp_servers)
        for attempt_budget in (budget, budget // 2):
            try:
                messages, cut = await self._messages(thread_id, question, model, attempt_budget)
                stream = await self._create_stream(model, messages, catalog)
            except _ContextTooLong:
                log.warning(
                    "chat run %s: too long for %s at %s tokens", turn_key, model, attempt_budget
                )
                continue
            return _Opened(stream, cut, model, messages, catalog, question.mcp_servers)
        return RunCheck(RunState.TOO_LONG, detail=CONTEXT_TOO_LONG)

    async def _read(
        self,
        thread_id: str,
        turn_key: str,
        opened: _Opened | RunCheck,
        deltas: Progress | None,
    ) -> RunCheck:
        """Read the answer as the model writes it and store it: that marks the run done."""
        if isinstance(opened, RunCheck):
            return opened
        for label in opened.catalog.unreachable:
            _show(deltas, server_down(label))
        tools = TurnTools(
            context=self._contexts.get(turn_key),
            servers=opened.servers,
            unreachable=set(opened.catalog.unreachable),
        )
        loop = _Loop(
            model=opened.model, messages=list(opened.messages), cut=opened.cut, tools=tools
        )
        return await self._loop(thread_id, turn_key, loop, opened.catalog, opened.stream, deltas)

    async def _loop(
        self,
        thread_id: str,
        turn_key: str,
        loop: _Loop,
        catalog: Catalog,
        stream: AsyncStream[ChatCompletionChunk] | None,
        deltas: Progress | None,
    ) -> RunCheck:
        """The tool-call loop: while the model asks for tools, run them and send it their
        results, within the cap on calls per turn (past it, no tools are offered). A call
        that needs a person's approval stops the loop; its state goes with the request, and
        `resume_run` carries on from there (`stream` None: the pending calls first)."""
        usage: Usage | None = None
        while True:
            if stream is not None:
                reply = await self._read_stream(stream, deltas)
                usage = _added(usage, reply.usage)
                if reply.state is not RunState.REQUIRES_ACTION or not reply.tool_calls:
                    break
                loop.messages.append(_assistant_calls(reply))
                loop.pending = [dataclasses.asdict(call) for call in reply.tool_calls]
            while loop.pending:
                call = RequestedCall(**loop.pending[0])
                result = await self._run_call(turn_key, loop.tools, catalog, call, deltas)
                if result.step is CallStep.NEEDS_APPROVAL:
                    assert result.spec is not None
                    request = ApprovalRequest(
                        call.id, result.spec.server, result.spec.name, call.arguments, loop.dump()
                    )
                    return RunCheck(RunState.NEEDS_APPROVAL, usage=usage, approval=request)
                loop.messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": result.output}
                )
                loop.pending.pop(0)
            offer = catalog if loop.tools.may_call(self._max_tool_calls) else EMPTY_CATALOG
            stream = await self._create_stream(loop.model, loop.messages, offer)
        if reply.state not in _STORED_STATES:
            detail = f"the model stopped ({reply.state.value})"
            return RunCheck(reply.state, detail=detail, usage=usage)
        text = loop.tools.noted(reply.text, first=[CUT_NOTE] if loop.cut else [])
        text = await self._store_answer(thread_id, turn_key, text, reply.state)
        self._contexts.pop(turn_key, None)
        return RunCheck(reply.state, text=text, usage=usage)

    async def _run_call(
        self,
        turn_key: str,
        turn: TurnTools,
        catalog: Catalog,
        call: RequestedCall,
        deltas: Progress | None,
    ) -> CallResult:
        """One call the model asked for, shown as a task while it goes (polled delivery
        sees the newest call that runs)."""
        steps = run_call(
            call, turn=turn, catalog=catalog, tools=self._tools, max_calls=self._max_tool_calls
        )
        async for step in steps:
            if isinstance(step, CallResult):
                return step
            _show(deltas, step)
            if deltas is None and step.status is ToolStatus.IN_PROGRESS:
                self._activity[turn_key] = step
        raise AssertionError("a tool call ended without a result")

    def _remember_context(self, turn_key: str, options: TurnOptions) -> None:
        if options.tool_context is not None:
            self._contexts[turn_key] = options.tool_context

    async def resume_run(
        self,
        *,
        thread_id: str,
        run_id: str,
        turn_key: str,
        approval: ApprovalRequest,
        allowed: bool,
    ) -> str:
        """Carry the stored loop on in a task: the decided call first, then the model."""
        loop = _Loop.load(approval.state, self._contexts.get(turn_key))
        loop.tools.decisions[approval.call_id] = allowed
        catalog = EMPTY_CATALOG
        if self._tools is not None:
            catalog = await self._tools.catalog(loop.tools.context, loop.tools.servers)
        self._tasks[turn_key] = asyncio.create_task(
            self._loop(thread_id, turn_key, loop, catalog, None, None)
        )
        return RUN_PREFIX + turn_key

    async def _messages(
        self, thread_id: str, question: _Question, model: str, budget: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """What this turn sends within `budget` tokens, and whether the question was cut."""
        instructions = joined_instructions(self._instructions, question.instructions) or ""
        async with self._sessions() as session:
            summary = await session.get(ChatSummary, thread_id)
            after = summary.up_to_seq if summary is not None else 0
            rows = list(
                await session.scalars(
                    select(ChatMessage)
                    .where(
                        ChatMessage.thread_id == thread_id,
                        ChatMessage.seq > after,
                        ChatMessage.seq < question.seq,
                    )
                    .order_by(ChatMessage.seq)
                )
            )
        plan = plan_context(
            budget=budget,
            instructions_tokens=estimate_tokens(instructions) if instructions else 0,
            history=[Entry(row.seq, row.role, row.tokens) for row in rows],
            newest_tokens=estimate_tokens(question.text, images=len(question.images)),
            summary_through=summary.up_to_seq if summary is not None else None,
            summary_tokens=summary.tokens if summary is not None else 0,
        )
        summary_text = summary.text if summary is not None else None
        if plan.summarise_through is not None:
            dropped = [row for row in rows if row.seq <= plan.summarise_through]
            summary_text = await self._summarise(
                thread_id, model, budget, summary_text, dropped, plan.summarise_through
            )
        system = instructions
        if plan.use_summary and summary_text:
            system = f"{instructions}\n\n{SUMMARY_HEADING}\n{summary_text}".strip()
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        if plan.send_from_seq is not None:
            messages += [
                {"role": row.role, "content": row.content}
                for row in rows
                if row.seq >= plan.send_from_seq
            ]
        text = question.text
        images = question.images
        if plan.cut_to_tokens is not None:
            text = cut_text(text, plan.cut_to_tokens - len(images) * IMAGE_TOKENS)
        messages.append({"role": "user", "content": _user_content(text, images)})
        return messages, plan.cut_to_tokens is not None

    async def _summarise(
        self,
        thread_id: str,
        model: str,
        budget: int,
        previous: str | None,
        dropped: Sequence[ChatMessage],
        through: int,
    ) -> str:
        """A summary of the previous summary and the newly dropped messages, stored."""
        lines = [
            f"{'Assistant' if row.role == 'assistant' else 'User'}: {row.content}"
            for row in dropped
        ]
        earlier = f"Earlier summary:\n{previous}\n\n" if previous else ""
        room = budget - summary_room(budget) - estimate_tokens(SUMMARY_PROMPT + earlier)
        lines = lines[
            len(lines) - newest_fitting([estimate_tokens(line) for line in lines], room) :
        ]
        content = f"{earlier}Conversation:\n" + "\n".join(lines)
        with translated_errors("summarise"):
            try:
                completion = await self._client.chat.completions.create(
                    model=model,
                    messages=[
                        {"role": "system", "content": SUMMARY_PROMPT},
                        {"role": "user", "content": content},
                    ],
                    timeout=self._completion_timeout_s,
                )
            except openai.BadRequestError as exc:
                if exc.code == CONTEXT_TOO_LONG:
                    raise _ContextTooLong from exc
                raise
        text = (completion.choices[0].message.content or "").strip() if completion.choices else ""
        text = cut_text(text, summary_room(budget))
        async with self._sessions.begin() as session:
            stored = await session.get(ChatSummary, thread_id, with_for_update=True)
            if stored is None:
                session.add(
                    ChatSummary(
                        thread_id=thread_id,
                        up_to_seq=through,
                        text=text,
                        tokens=estimate_tokens(text),
                        created_at=time.time(),
                    )
                )
            elif stored.up_to_seq < through:
                stored.up_to_seq, stored.text = through, text
                stored.tokens, stored.created_at = estimate_tokens(text), time.time()
        log.info("chat thread %s: summarised through message %s", thread_id, through)
        return text

    async def _create_stream(
        self, model: str, messages: list[dict[str, Any]], catalog: Catalog = EMPTY_CATALOG
    ) -> AsyncStream[ChatCompletionChunk]:
        tools: Any = [spec.as_function() for spec in catalog.tools] or openai.omit
        with translated_errors("chat completion"):
            try:
                return await self._client.chat.completions.create(
                    model=model,
                    messages=cast(Any, messages),
                    tools=tools,
                    stream=True,
                    stream_options={"include_usage": True},
                    timeout=self._completion_timeout_s,
                )
            except openai.BadRequestError as exc:
                if exc.code == CONTEXT_TOO_LONG:
                    raise _ContextTooLong from exc
                raise

    async def _read_stream(
        self, stream: AsyncStream[ChatCompletionChunk], deltas: Progress | None
    ) -> _Reply:
        parts: list[str] = []
        finish: str | None = None
        usage: Usage | None = None
        calls: dict[int, dict[str, str]] = {}
        try:
            with translated_errors("chat completion stream"):
                async with stream:
                    async for chunk in stream:
                        if chunk.usage is not None:
                            usage = _usage(chunk.model, chunk.usage)
                        for choice in chunk.choices:
                            if choice.delta.content:
                                parts.append(choice.delta.content)
                                _show(deltas, choice.delta.content)
                            for piece in choice.delta.tool_calls or []:
                                call = calls.setdefault(
                                    piece.index, {"id": "", "name": "", "arguments": ""}
                                )
                                call["id"] = piece.id or call["id"]
                                if piece.function is not None:
                                    call["name"] += piece.function.name or ""
                                    call["arguments"] += piece.function.arguments or ""
                            finish = choice.finish_reason or finish
        except openai.APIError as exc:
            # An error event in the middle of the stream: the server gave up on this answer.
            raise AssistantUnavailable(f"chat completion stream: {exc.message}") from exc
        if finish is None:
            raise AssistantUnavailable("chat completion stream: it ended before the answer")
        tool_calls = tuple(RequestedCall(**calls[index]) for index in sorted(calls))
        state = _FINISH_STATES.get(finish, RunState.COMPLETED)
        return _Reply(state, "".join(parts), usage, tool_calls)

    # The store ----------------------------------------------------------------------

    async def _store_question(
        self,
        thread_id: str,
        turn_key: str,
        text: str,
        images: Sequence[Image],
        options: TurnOptions,
    ) -> None:
        """Store the turn's user message, once however often the turn is started."""
        urls = [image_data_url(image) for image in images]
        row = ChatMessage(
            thread_id=thread_id,
            role="user",
            turn_key=turn_key,
            content=text,
            tokens=estimate_tokens(text),
            images=json.dumps(urls) if urls else None,
            model=options.model,
            instructions=options.instructions,
            mcp_servers=None if options.mcp_servers is None else json.dumps(options.mcp_servers),
            created_at=time.time(),
        )
        await self._insert(row)

    async def _store_answer(self, thread_id: str, turn_key: str, text: str, state: RunState) -> str:
        """Store the answer (this marks the run done); the first stored answer wins."""
        row = ChatMessage(
            thread_id=thread_id,
            role="assistant",
            turn_key=turn_key,
            content=text,
            tokens=estimate_tokens(text),
            outcome=state.value,
            created_at=time.time(),
        )
        if await self._insert(row):
            return text
        stored = await self._stored_answer(thread_id, turn_key)
        return stored.text if stored is not None else text

    async def _insert(self, row: ChatMessage) -> bool:
        """Add the row as the thread's next message; False if the turn already has it."""
        for _ in range(5):
            try:
                async with self._sessions.begin() as session:
                    if await _exists(session, row):
                        return False
                    newest = await session.scalar(
                        select(func.max(ChatMessage.seq)).where(
                            ChatMessage.thread_id == row.thread_id
                        )
                    )
                    row.seq = (newest or 0) + 1
                    session.add(row)
                return True
            except IntegrityError:
                continue  # another process stored this row, or took the seq: look again
        raise AssistantUnavailable("chat store: could not store a message")

    async def _question(self, thread_id: str, turn_key: str) -> _Question:
        async with self._sessions() as session:
            row = await session.scalar(
                _row(thread_id, turn_key, "user").options(undefer(ChatMessage.images))
            )
        if row is None:
            raise AssistantRejected(f"chat run {turn_key}: its question was never stored")
        return _Question(
            seq=row.seq,
            text=row.content,
            images=tuple(json.loads(row.images)) if row.images else (),
            model=row.model,
            instructions=row.instructions,
            mcp_servers=None if row.mcp_servers is None else tuple(json.loads(row.mcp_servers)),
        )

    async def _stored_answer(self, thread_id: str, turn_key: str) -> RunCheck | None:
        async with self._sessions() as session:
            row = await session.scalar(_row(thread_id, turn_key, "assistant"))
        if row is None:
            return None
        return RunCheck(RunState(row.outcome or RunState.COMPLETED.value), text=row.content)


def _event(item: str | ToolProgress) -> StreamDelta | ToolProgress:
    return StreamDelta(item) if isinstance(item, str) else item


def _show(deltas: Progress | None, item: str | ToolProgress) -> None:
    if deltas is not None:
        deltas.put_nowait(item)


def _assistant_calls(reply: _Reply) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": reply.text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in reply.tool_calls
        ],
    }


def _added(total: Usage | None, more: Usage | None) -> Usage | None:
    """Usage over the rounds of a tool-call loop."""
    if total is None or more is None:
        return more or total
    return Usage(
        model=total.model,
        input_tokens=total.input_tokens + more.input_tokens,
        cached_input_tokens=total.cached_input_tokens + more.cached_input_tokens,
        output_tokens=total.output_tokens + more.output_tokens,
        reasoning_tokens=total.reasoning_tokens + more.reasoning_tokens,
    )


def _row(thread_id: str, turn_key: str, role: str) -> Any:
    return select(ChatMessage).where(
        ChatMessage.thread_id == thread_id,
        ChatMessage.turn_key == turn_key,
        ChatMessage.role == role,
    )


async def _exists(session: AsyncSession, row: ChatMessage) -> bool:
    found = await session.scalar(
        _row(row.thread_id, row.turn_key, row.role).with_only_columns(ChatMessage.id)
    )
    return found is not None


def _user_content(text: str, images: Sequence[str]) -> str | list[dict[str, Any]]:
    if not images:
        return text
    return [{"type": "text", "text": text}] + [
        {"type": "image_url", "image_url": {"url": url}} for url in images
    ]


def _usage(model: str, usage: CompletionUsage | None) -> Usage | None:
    if usage is None:
        return None
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    reasoning = (
        usage.completion_tokens_details.reasoning_tokens if usage.completion_tokens_details else 0
    )
    return Usage(
        model=model,
        input_tokens=usage.prompt_tokens,
        cached_input_tokens=cached or 0,
        output_tokens=usage.completion_tokens,
        reasoning_tokens=reasoning or 0,
    )
