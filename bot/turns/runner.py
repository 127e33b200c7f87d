"""The turn state machine: one turn of one conversation, resumed wherever it stopped.

    queued  → the user sees that the bot is working; the run is started   → running
    running → the run is polled (or streamed) until it ends                → posting
    posting → the answer (or a clear error) is posted, chunk by chunk      → done

(A tool call a person must allow: running → awaiting_approval → resuming → running, in
bot/turns/approval_flow.py.) Each transition is stored (fenced by the conversation's lease)
before the next step, so a restarted process, or one that took the conversation over,
resumes a turn where it was. Each state has a cap on attempts: past it, the user is told
and the thread moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar

from bot import logs, metrics
from bot.admin.service import AdminService
from bot.assistants.base import (
    NO_OPTIONS,
    AssistantBackend,
    AssistantRejected,
    AssistantUnavailable,
    RunCheck,
    RunLookup,
    RunState,
    StreamDelta,
    StreamStarted,
    ToolProgress,
    TurnOptions,
    TurnRequest,
    UsageReport,
)
from bot.live import THINKING_TEXT
from bot.settings import Settings
from bot.store.leases import LeaseLost
from bot.store.repository import Store
from bot.store.turns import TurnWork
from bot.tools.approvals import ApprovalStore
from bot.turns.active import ActiveTurn
from bot.turns.approval_flow import ApprovalFlow
from bot.turns.delivery import Delivery
from bot.turns.ending import TurnEnding
from bot.turns.prompt import Prompt, PromptBuilder
from bot.turns.retry import RetryPolicy
from bot.turns.run_watch import RunWatch, retrying
from bot.turns.session import TurnExit, TurnSession
from bot.turns.states import Outcome, TurnStatus
from bot.turns.tool_loop import with_tools
from bot.turns.turn_limits import asker_of, over_budget, tool_context
from bot.turns.usage import UsageMeter
from bot.turns.wakeups import RunWakeups

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ATTEMPTS = 5
"""Attempts at asking the assistant before the user is told it is unavailable."""
MAX_POSTING_ATTEMPTS = 5
"""Further attempts at posting before the answer is given up (Slack keeps refusing it)."""


class TurnRunner:
    def __init__(
        self,
        *,
        store: Store,
        backend: AssistantBackend,
        delivery: Delivery,
        prompts: PromptBuilder,
        settings: Settings,
        retry: RetryPolicy,
        admin: AdminService,
        approvals: ApprovalStore,
        wakeups: RunWakeups,
    ) -> None:
        self._admin = admin
        self._store = store
        self._backend = backend
        self._delivery = delivery
        self._prompts = prompts
        self._settings = settings
        self._retry = retry
        self._approvals = approvals
        self.interrupting = False
        """Set when the process stops with turns in hand (bot.dispatcher.Dispatcher.shutdown)."""
        self._usage = UsageMeter(admin)
        self._ending = TurnEnding(backend, self._usage)
        self._approval = ApprovalFlow(
            backend=backend, delivery=delivery, approvals=approvals, settings=settings
        )
        self._watch = RunWatch(
            backend=backend,
            delivery=delivery,
            settings=settings,
            usage=self._usage,
            wakeups=wakeups,
        )

    async def take_turn(self, work: TurnWork) -> None:
        logs.bind_turn(work.turn.id, work.conversation.team_id, work.conversation.channel_id)
        session = TurnSession.open(ActiveTurn(self._store, work))
        how = TurnExit.FAILED
        try:
            await self._advance(session)
            how = TurnExit.RETURNED
        except LeaseLost:
            how = TurnExit.LEASE_LOST
            raise
        except asyncio.CancelledError:
            # The process stops now: the live answer ends with a note; or it dies.
            how = TurnExit.STOPPING if self.interrupting else TurnExit.CANCELLED
            raise
        finally:
            # Whatever the way out, nothing of the attempt stays but what is stored.
            await self._close(session, how)
        if session.active.status is TurnStatus.DONE:
            await self._ending.report(session)

    async def _close(self, session: TurnSession, how: TurnExit) -> None:
        try:
            await self._delivery.let_go(session, how)
        finally:
            await session.close()

    async def _advance(self, session: TurnSession) -> None:
        active = session.active
        await self._enforce_attempt_caps(session)
        if active.status in (TurnStatus.QUEUED, TurnStatus.RESUMING, TurnStatus.RUNNING):
            session.tools.context = tool_context(
                active, inbox=self._store.inbox, search=self._settings.slack_search
            )
        if active.status is TurnStatus.QUEUED:
            await self._start(session)
        if active.status is TurnStatus.RESUMING:
            await self._approval.resume(session, self._retrying)
        if active.status is TurnStatus.RUNNING:
            await self._finish_run(session)
        if active.status is TurnStatus.POSTING:
            messages = active.messages
            newest_ts = messages[-1].ts if messages else active.conversation.thread_ts
            images = [] if active.turn.files_posted else await self._watch.produced_files(active)
            await self._delivery.deliver(session, after_ts=newest_ts, images=images)

    async def _enforce_attempt_caps(self, session: TurnSession) -> None:
        active = session.active
        turn = active.turn
        if turn.attempts > MAX_ATTEMPTS and active.status in (
            TurnStatus.QUEUED,
            TurnStatus.RUNNING,
        ):
            log.error("turn %s: giving up after %s attempts", turn.id, MAX_ATTEMPTS)
            await active.mark_posting(Outcome.UNAVAILABLE)
        elif turn.attempts > MAX_ATTEMPTS + MAX_POSTING_ATTEMPTS:
            log.error("turn %s: Slack kept refusing the answer; giving it up", turn.id)
            await self._delivery.finish(
                session, chunks_posted=turn.chunks_posted, reply_ts=turn.reply_ts
            )

    # queued → running ---------------------------------------------------------------------

    async def _start(self, session: TurnSession) -> None:
        active = session.active
        await self._delivery.show_working(active)
        conversation = active.conversation
        channel = await self._admin.channel_settings(conversation.team_id, conversation.channel_id)
        if await over_budget(active, channel, self._admin):
            return
        try:
            prompt = await self._prompts.build(active)
            if prompt.note is not None:
                await self._delivery.tell(active, prompt.note)
            if prompt.empty:
                await active.mark_posting(Outcome.EMPTY)
                return
            options = self._admin.turn_options(channel, asker_of(active))
            session.tools.servers = options.mcp_servers
            thread_id = await self._retrying(session, lambda _: self._ensure_thread(active))
            await self._retrying(
                session,
                lambda retry: self._respond(
                    session, thread_id=thread_id, prompt=prompt, retry=retry, options=options
                ),
            )
        except AssistantUnavailable as exc:
            metrics.openai_error("unavailable")
            log.warning("turn %s: assistant unavailable: %s", active.turn.id, exc)
            await active.mark_posting(Outcome.UNAVAILABLE)
            return
        except AssistantRejected as exc:
            metrics.openai_error("rejected")
            log.error("turn %s: assistant refused the request: %s", active.turn.id, exc)
            await active.mark_posting(Outcome.REJECTED)

    async def _ensure_thread(self, active: ActiveTurn) -> str:
        conversation = active.conversation
        if conversation.remote_id is not None and conversation.backend == self._backend.name:
            return conversation.remote_id
        remote_id = await self._backend.create_thread(
            metadata={
                "slack_team": conversation.team_id,
                "slack_channel": conversation.channel_id,
                "slack_thread_ts": conversation.thread_ts,
            }
        )
        await self._store.turns.set_remote_thread(
            active.lease, backend=self._backend.name, remote_id=remote_id
        )
        conversation.remote_id = remote_id
        conversation.backend = self._backend.name
        return remote_id

    async def _find_run(self, session: TurnSession, *, thread_id: str, text: str) -> str | None:
        """The run an earlier attempt of this turn may have started (its request failed on
        our side, or the process died before storing the run's id)."""
        active = session.active
        previous = await self._store.history.previous_run_id(
            active.conversation.id, turn_id=active.turn.id, backend=self._backend.name
        )
        lookup = RunLookup(thread_id, active.key, text, previous)
        return await self._backend.find_run(lookup, session.tools)

    async def _respond(
        self,
        session: TurnSession,
        *,
        thread_id: str,
        prompt: Prompt,
        retry: bool,
        options: TurnOptions = NO_OPTIONS,
    ) -> None:
        """Ask the model. Streamed, its words and tool calls are shown as they come; polled,
        the run is started in the background and followed afterwards (`_finish_run`).

        Once the run exists (its id stored), a broken stream falls back to polling that run;
        before that, the error goes to the caller, which retries or explains.
        """
        active = session.active
        if retry or not active.first_attempt:
            found = await self._find_run(session, thread_id=thread_id, text=prompt.text)
            if found is not None:
                await session.mark_running(found, self._backend.name)
                return
        final: RunCheck | None = None
        await active.check_lease()
        try:
            streamed = self._settings.delivery == "stream"
            request = TurnRequest(
                thread_id, prompt.text, active.key, prompt.images, options, streamed=streamed
            )
            events = with_tools(self._backend.respond(request, session.tools), session.tools)
            async with (
                asyncio.timeout(max(0.0, active.turn.deadline_at - time.time())),
                aclosing(events),
            ):
                async for event in events:
                    if isinstance(event, StreamStarted):
                        await session.mark_running(event.run_id, self._backend.name)
                    elif isinstance(event, StreamDelta):
                        await self._delivery.show_words(session, event.text)
                    elif isinstance(event, ToolProgress):
                        await self._delivery.show_tool(session, event)
                    elif isinstance(event, UsageReport):
                        await self._usage.add(active, event.usage)
                    else:
                        final = event
        except (AssistantUnavailable, TimeoutError) as exc:
            if active.status is not TurnStatus.RUNNING:
                raise AssistantUnavailable(f"stream: {exc!r}") from exc
            if isinstance(exc, TimeoutError) and time.time() >= active.turn.deadline_at:
                # Past the deadline, as a polled run would be: stopped (a local run stopped
                # with its stream) and explained.
                assert active.turn.remote_run_id is not None
                final = await self._watch.expire(
                    active, thread_id=thread_id, run_id=active.turn.remote_run_id
                )
            else:
                log.warning(
                    "turn %s: the stream broke (%r); polling the run instead", active.turn.id, exc
                )
        if final is not None:
            await self._record_outcome(session, thread_id=thread_id, check=final)

    # running → posting --------------------------------------------------------------------

    async def _finish_run(self, session: TurnSession) -> None:
        turn, conversation = session.active.turn, session.active.conversation
        assert turn.remote_run_id is not None and conversation.remote_id is not None
        check = await self._watch.until_finished(
            session, thread_id=conversation.remote_id, run_id=turn.remote_run_id
        )
        await self._record_outcome(session, thread_id=conversation.remote_id, check=check)

    async def _record_outcome(
        self, session: TurnSession, *, thread_id: str, check: RunCheck
    ) -> None:
        active = session.active
        turn = active.turn
        await self._usage.add(active, check.usage)
        if check.state is RunState.NEEDS_APPROVAL and check.approval is not None:
            await self._approval.wait_for(session, check.approval)
            return
        if check.state is RunState.REQUIRES_ACTION and turn.remote_run_id is not None:
            used = await self._backend.cancel_run(thread_id=thread_id, run_id=turn.remote_run_id)
            await self._usage.add(active, used)
        if check.detail:
            log.info("turn %s: run ended %s (%s)", turn.id, check.state.value, check.detail)
        await active.mark_posting(
            Outcome(check.state.value),
            await self._approvals.with_expiry_notes(turn.id, check.text) or None,
            files_posted=check.produced_files == 0,
        )

    async def _retrying(self, session: TurnSession, call: Callable[[bool], Awaitable[T]]) -> T:
        deadline_at = session.active.turn.deadline_at
        return await retrying(call, policy=self._retry, deadline_at=deadline_at)


HIDDEN_FROM_HISTORY = frozenset({THINKING_TEXT})
