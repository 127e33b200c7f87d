"""OpenAI's Chat Completions API (or any server that speaks it): the bot is the thread.

Chat Completions keeps no state, so this backend keeps each thread's messages in the bot's
own database (`bot/store/chat_models.py`) and sends the conversation on every turn, as much
of it as fits the model's window (`bot/assistants/context.py`).

A turn is a local run: its user message is stored first (once per turn key), the answer is
read inside the call the runner awaits (`respond` streamed, or `check_run` after it), and
stored when the model finishes, in the one transaction that marks the run done. So:

- a crash after the answer is stored posts the stored answer (the model is not asked again);
- a crash (or a broken stream) before it is stored leaves a user message with no answer:
  whoever checks the run next asks the model again. The model may be called twice; the
  answer is stored, and therefore posted, once (the first stored answer wins).

The request is sent (and its HTTP status known) before `respond` yields the run id, so an
API that is down or refuses the turn is reported where the service retries or explains it;
started in the background, a turn leaves the request it sent with its tools
(`TurnTools.held`) for `check_run` to read. Answers are always streamed from the API (the
read timeout then applies between chunks, not to the whole answer). Only the newest question
carries its images: earlier ones are sent as text, so a model without vision refuses one
turn, not every later one.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from functools import partial

from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.assistants.base import (
    AssistantUnavailable,
    CheckEvent,
    Resume,
    RunCheck,
    RunLookup,
    RunResponder,
    RunState,
    StreamDelta,
    StreamEvent,
    StreamStarted,
    ToolProgress,
    TurnRequest,
    Usage,
    server_down,
)
from bot.assistants.chat_history import CONTEXT_TOO_LONG, ChatHistory, ContextTooLong
from bot.assistants.chat_store import ChatStore
from bot.assistants.chat_stream import (
    Answered,
    Opened,
    Reply,
    ToolLoop,
    assistant_calls,
    create_stream,
    read_reply,
)
from bot.assistants.context import CUT_NOTE, context_budget
from bot.assistants.tool_calls import RequestedCall, Toolbox, ToolCalls
from bot.assistants.turn_tools import TurnTools
from bot.attachments import Image
from bot.tools.mcp_client import EMPTY_CATALOG, Catalog, McpTools

log = logging.getLogger(__name__)

RUN_PREFIX = "chatrun:"
_STORED_STATES = {RunState.COMPLETED, RunState.INCOMPLETE}

ChatEvent = str | ToolProgress | ToolCalls | RunCheck
"""What a chat turn yields as it goes: answer text, unreachable tool servers, the tool calls
the model asks for, then its end."""


class ChatBackend(RunResponder):
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
        self._client = client
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._store = ChatStore(sessions)
        self._history = ChatHistory(
            client, sessions, instructions=instructions, completion_timeout_s=completion_timeout_s
        )
        self._model = model
        self._context_tokens = context_tokens
        self._send = partial(create_stream, client, timeout_s=completion_timeout_s)

    # The Protocol -------------------------------------------------------------------

    async def create_thread(self, *, metadata: dict[str, str]) -> str:
        return f"chat_{uuid.uuid4().hex}"

    async def _start_run(self, request: TurnRequest, tools: TurnTools) -> str:
        """Store the question and send it; `check_run` reads the answer.

        The request is sent before this returns, so an API that refuses it or cannot be
        reached is reported here, as other backends report a run that cannot be created.
        """
        thread_id, text, turn_key = request.thread_id, request.text, request.turn_key
        images, options = request.images, request.options
        await self._store.store_question(thread_id, turn_key, text, images, options)
        await tools.close()
        tools.held = await self._opening(thread_id, turn_key, tools)
        return RUN_PREFIX + turn_key

    async def find_run(self, lookup: RunLookup, tools: TurnTools) -> str | None:
        """The run a crashed attempt of this turn started: its question is stored.

        Not when this turn's last attempt here could not reach the model: then the turn is
        started again, so an API that stays down is reported as such.
        """
        if tools.unreached:
            return None
        stored = await self._store.has_question(lookup.thread_id, lookup.turn_key)
        return RUN_PREFIX + lookup.turn_key if stored else None

    async def check_run(
        self, *, thread_id: str, run_id: str, tools: TurnTools
    ) -> AsyncGenerator[CheckEvent | ToolCalls, None]:
        """Read the answer to its end: the request `respond` sent, the loop an approval
        paused, else the stored answer, else (the process that asked is gone, or its
        answer broke off) the model is asked again."""
        turn_key = run_id.removeprefix(RUN_PREFIX)
        async for event in self._following(thread_id, turn_key, tools):
            if not isinstance(event, str):
                yield event

    async def _following(
        self, thread_id: str, turn_key: str, tools: TurnTools
    ) -> AsyncIterator[ChatEvent]:
        held = tools.take_held()
        if isinstance(held, ToolLoop):
            catalog = EMPTY_CATALOG
            if self._tools is not None:
                catalog = await self._tools.catalog(tools.context, tools.servers)
            async for event in self._loop(thread_id, turn_key, held, catalog, None, tools):
                yield event
            return
        if not isinstance(held, Opened | Answered):
            answer = await self._store.stored_answer(thread_id, turn_key)
            if answer is not None:
                yield answer
                return
            if tools.unreached or not await self._store.has_question(thread_id, turn_key):
                yield RunCheck(RunState.FAILED, detail="the turn's question was never stored")
                return
            held = await self._opening(thread_id, turn_key, tools)
        async for event in self._read(thread_id, turn_key, held, tools):
            yield event

    async def cancel_run(self, *, thread_id: str, run_id: str) -> Usage | None:
        """Nothing runs apart from the call reading the answer: stopping it hangs up."""
        return None

    async def _stream_run(
        self, request: TurnRequest, tools: TurnTools
    ) -> AsyncGenerator[StreamEvent | ToolCalls, None]:
        """Store the question, then stream the answer as the model writes it.

        If the caller stops listening (a deadline, a broken Slack stream), the request is
        hung up on; `check_run` asks again."""
        thread_id, text, turn_key = request.thread_id, request.text, request.turn_key
        images, options = request.images, request.options
        await self._store.store_question(thread_id, turn_key, text, images, options)
        await tools.close()
        opened = await self._opening(thread_id, turn_key, tools)
        yield StreamStarted(RUN_PREFIX + turn_key)
        async for event in self._read(thread_id, turn_key, opened, tools):
            yield StreamDelta(event) if isinstance(event, str) else event

    async def produced_files(self, *, thread_id: str, run_id: str) -> list[Image]:
        return []

    async def delete_thread(self, thread_id: str) -> None:
        await self._store.delete_thread(thread_id)

    async def close(self) -> None:
        await self._client.close()

    async def _resume_run(self, resume: Resume, tools: TurnTools) -> str:
        """The stored loop goes with the turn's tools: the next check carries it on, the
        decided call first, then the model."""
        loop, stored = ToolLoop.load(resume.approval.state)
        if "calls_made" in stored and not tools.calls_made:
            legacy = TurnTools.from_stored(stored, tools.context)
            tools.calls_made, tools.unreachable = legacy.calls_made, legacy.unreachable
            tools.servers = legacy.servers
        tools.decisions[resume.approval.call_id] = resume.allowed
        await tools.close()
        tools.held = loop
        return resume.run_id

    # A turn ---------------------------------------------------------------------------

    async def _opening(self, thread_id: str, turn_key: str, tools: TurnTools) -> Opened | Answered:
        try:
            opened = await self._open(thread_id, turn_key, tools)
        except AssistantUnavailable:
            tools.unreached = True
            raise
        tools.unreached = False
        return opened

    async def _open(self, thread_id: str, turn_key: str, tools: TurnTools) -> Opened | Answered:
        """Send the turn (what fits of the thread, then its question) as a streamed request.

        A stored answer is the result already. A request the server finds too long for the
        model is sent once more with half the budget; then the turn ends TOO_LONG.
        """
        stored = await self._store.stored_answer(thread_id, turn_key)
        if stored is not None:
            return Answered(stored)
        question = await self._store.question(thread_id, turn_key)
        model = question.model or self._model
        budget = context_budget(model, self._context_tokens)
        catalog = EMPTY_CATALOG
        if self._tools is not None:
            catalog = await self._tools.catalog(tools.context, question.mcp_servers)
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
        return Answered(RunCheck(RunState.TOO_LONG, detail=CONTEXT_TOO_LONG))

    async def _read(
        self, thread_id: str, turn_key: str, opened: Opened | Answered, tools: TurnTools
    ) -> AsyncIterator[ChatEvent]:
        """Read the answer as the model writes it and store it: that marks the run done."""
        if isinstance(opened, Answered):
            yield opened.check
            return
        for label in opened.catalog.unreachable:
            yield server_down(label)
        # A fresh ask: the turn's calls start again from none.
        tools.servers, tools.calls_made = opened.servers, 0
        tools.unreachable = set(opened.catalog.unreachable)
        loop = ToolLoop(model=opened.model, messages=list(opened.messages), cut=opened.cut)
        async for event in self._loop(
            thread_id, turn_key, loop, opened.catalog, opened.stream, tools
        ):
            yield event

    async def _loop(
        self,
        thread_id: str,
        turn_key: str,
        loop: ToolLoop,
        catalog: Catalog,
        stream: AsyncStream[ChatCompletionChunk] | None,
        tools: TurnTools,
    ) -> AsyncIterator[ChatEvent]:
        """While the model asks for tools, the turn's tool loop runs them (ToolCalls) and
        the model is sent their outputs, within the cap on calls per turn (past it, no tools
        are offered). A call that needs a person's approval ends the events there; the loop's
        state goes with the request, and `_resume_run` carries on from there (`stream` None:
        the pending calls first)."""
        reply: Reply | None = None
        while True:
            usage: Usage | None = None
            if stream is not None:
                async for piece in read_reply(stream):
                    if isinstance(piece, str):
                        yield piece
                    else:
                        reply = piece
                assert reply is not None
                if reply.state is not RunState.REQUIRES_ACTION or not reply.tool_calls:
                    break
                loop.messages.append(assistant_calls(reply))
                loop.pending = [dataclasses.asdict(call) for call in reply.tool_calls]
                usage = reply.usage
            if loop.pending:
                calls = tuple(RequestedCall(**call) for call in loop.pending)
                box = Toolbox(self._tools, catalog, self._max_tool_calls)
                asked = ToolCalls(calls, box, state=loop.dump(), usage=usage)
                yield asked
                loop.messages += [
                    {"role": "tool", "tool_call_id": call, "content": output}
                    for call, output in asked.answered().items()
                ]
                loop.pending = []
            offer = catalog if tools.may_call(self._max_tool_calls) else EMPTY_CATALOG
            stream = await self._send(loop.model, loop.messages, offer)
        yield await self._finish(thread_id, turn_key, reply, loop, tools)

    async def _finish(
        self,
        thread_id: str,
        turn_key: str,
        reply: Reply,
        loop: ToolLoop,
        tools: TurnTools,
    ) -> RunCheck:
        """The model's last reply (what the earlier ones used went with their ToolCalls)."""
        usage = reply.usage
        if reply.state not in _STORED_STATES:
            detail = f"the model stopped ({reply.state.value})"
            return RunCheck(reply.state, detail=detail, usage=usage)
        text = tools.noted(reply.text, first=[CUT_NOTE] if loop.cut else [])
        text = await self._store.store_answer(thread_id, turn_key, text, reply.state)
        return RunCheck(reply.state, text=text, usage=usage)
