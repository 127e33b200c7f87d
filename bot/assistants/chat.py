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
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from functools import partial

from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.assistants.base import (
    NO_OPTIONS,
    ApprovalRequest,
    AssistantRejected,
    AssistantUnavailable,
    ProgressSink,
    RunCheck,
    RunState,
    StreamEvent,
    StreamStarted,
    ToolContext,
    ToolProgress,
    ToolStatus,
    TurnOptions,
    Usage,
    server_down,
)
from bot.assistants.chat_history import CONTEXT_TOO_LONG, ChatHistory, ContextTooLong
from bot.assistants.chat_store import ChatStore
from bot.assistants.chat_stream import (
    Opened,
    Progress,
    ToolLoop,
    added,
    assistant_calls,
    create_stream,
    read_reply,
    relayed,
    show,
)
from bot.assistants.context import CUT_NOTE, context_budget
from bot.assistants.tool_calls import (
    CallResult,
    CallStep,
    RequestedCall,
    Toolbox,
    TurnTools,
    run_calls,
)
from bot.attachments import Image
from bot.tools.mcp_client import EMPTY_CATALOG, Catalog, McpTools

log = logging.getLogger(__name__)

RUN_PREFIX = "chatrun:"
_STORED_STATES = {RunState.COMPLETED, RunState.INCOMPLETE}


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
        """Turn key → what its own tools act with (held in memory only)."""
        self._activity: dict[str, ToolProgress] = {}
        """Turn key → its newest tool call update, for polled delivery (`check_run`)."""
        self._client = client
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._store = ChatStore(sessions)
        self._history = ChatHistory(
            client, sessions, instructions=instructions, completion_timeout_s=completion_timeout_s
        )
        self._model = model
        self._context_tokens = context_tokens
        self._send = partial(create_stream, client, timeout_s=completion_timeout_s)
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
        await self._store.store_question(thread_id, turn_key, text, images, options)
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
        stored = await self._store.has_question(thread_id, turn_key)
        return RUN_PREFIX + turn_key if stored else None

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
        answer = await self._store.stored_answer(thread_id, turn_key)
        if answer is not None:
            return answer
        if turn_key in self._unreached or not await self._store.has_question(thread_id, turn_key):
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
        await self._store.store_question(thread_id, turn_key, text, images, options)
        opened = await self._opening(thread_id, turn_key)
        yield StreamStarted(RUN_PREFIX + turn_key)
        deltas: Progress = asyncio.Queue()
        task = asyncio.create_task(self._read(thread_id, turn_key, opened, deltas))
        self._tasks[turn_key] = task
        async with aclosing(relayed(deltas, task)) as events:
            async for event in events:
                yield event
        try:
            result = await asyncio.shield(task)
        finally:
            if self._tasks.get(turn_key) is task:
                del self._tasks[turn_key]
        yield result

    async def produced_files(self, *, thread_id: str, run_id: str) -> list[Image]:
        return []

    async def delete_thread(self, thread_id: str) -> None:
        await self._store.delete_thread(thread_id)

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

    async def _opening(self, thread_id: str, turn_key: str) -> Opened | RunCheck:
        try:
            opened = await self._open(thread_id, turn_key)
        except AssistantUnavailable:
            self._unreached.add(turn_key)
            raise
        self._unreached.discard(turn_key)
        return opened

    async def _open(self, thread_id: str, turn_key: str) -> Opened | RunCheck:
        """Send the turn (what fits of the thread, then its question) as a streamed request.

        A stored answer is the result already. A request the server finds too long for the
        model is sent once more with half the budget; then the turn ends TOO_LONG.
        """
        stored = await self._store.stored_answer(thread_id, turn_key)
        if stored is not None:
            return stored
        question = await self._store.question(thread_id, turn_key)
        model = question.model or self._model
        budget = context_budget(model, self._context_tokens)
        catalog = EMPTY_CATALOG
        if self._tools is not None:
            catalog = await self._tools.catalog(self._contexts.get(turn_key), question.mcp_servers)
        for attempt_budget in (budget, budget // 2):
            try:
                messages, cut = await self._history.messages(
                    thread_id, question, model, attempt_budget
                )
                stream = await self._send(model, messages, catalog)
            except ContextTooLong:
                log.warning(
                    "chat run %s: too long for %s at %s tokens", turn_key, model, attempt_budget
                )
                continue
            return Opened(stream, cut, model, messages, catalog, question.mcp_servers)
        return RunCheck(RunState.TOO_LONG, detail=CONTEXT_TOO_LONG)

    async def _read(
        self,
        thread_id: str,
        turn_key: str,
        opened: Opened | RunCheck,
        deltas: Progress | None,
    ) -> RunCheck:
        """Read the answer as the model writes it and store it: that marks the run done."""
        if isinstance(opened, RunCheck):
            return opened
        for label in opened.catalog.unreachable:
            show(deltas, server_down(label))
        tools = TurnTools(
            context=self._contexts.get(turn_key),
            servers=opened.servers,
            unreachable=set(opened.catalog.unreachable),
        )
        loop = ToolLoop(
            model=opened.model, messages=list(opened.messages), cut=opened.cut, tools=tools
        )
        return await self._loop(thread_id, turn_key, loop, opened.catalog, opened.stream, deltas)

    async def _loop(
        self,
        thread_id: str,
        turn_key: str,
        loop: ToolLoop,
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
                reply = await read_reply(stream, lambda text: show(deltas, text))
                usage = added(usage, reply.usage)
                if reply.state is not RunState.REQUIRES_ACTION or not reply.tool_calls:
                    break
                loop.messages.append(assistant_calls(reply))
                loop.pending = [dataclasses.asdict(call) for call in reply.tool_calls]
            while loop.pending:
                call = RequestedCall(**loop.pending[0])
                result = await self._run_call(turn_key, loop.tools, catalog, call, deltas)
                if result.step is CallStep.NEEDS_APPROVAL:
                    request = result.approval(loop.dump())
                    return RunCheck(RunState.NEEDS_APPROVAL, usage=usage, approval=request)
                loop.messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": result.output}
                )
                loop.pending.pop(0)
            offer = catalog if loop.tools.may_call(self._max_tool_calls) else EMPTY_CATALOG
            stream = await self._send(loop.model, loop.messages, offer)
        if reply.state not in _STORED_STATES:
            detail = f"the model stopped ({reply.state.value})"
            return RunCheck(reply.state, detail=detail, usage=usage)
        text = loop.tools.noted(reply.text, first=[CUT_NOTE] if loop.cut else [])
        text = await self._store.store_answer(thread_id, turn_key, text, reply.state)
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
        box = Toolbox(self._tools, catalog, self._max_tool_calls)
        async for step in run_calls([call], turn, box):
            if isinstance(step, CallResult):
                return step
            show(deltas, step)
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
        loop = ToolLoop.load(approval.state, self._contexts.get(turn_key))
        loop.tools.decisions[approval.call_id] = allowed
        catalog = EMPTY_CATALOG
        if self._tools is not None:
            catalog = await self._tools.catalog(loop.tools.context, loop.tools.servers)
        self._tasks[turn_key] = asyncio.create_task(
            self._loop(thread_id, turn_key, loop, catalog, None, None)
        )
        return RUN_PREFIX + turn_key
