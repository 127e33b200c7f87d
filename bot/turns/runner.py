"""The turn state machine: one turn of one conversation, resumed wherever it stopped.

    queued  → the user sees that the bot is working; the run is started   → running
    running → the run is polled (or streamed) until it ends                → posting
    posting → the answer (or a clear error) is posted, chunk by chunk      → done

Each transition is stored (fenced by the conversation's lease) before the next step, so a
restarted process, or one that took the conversation over, resumes a turn where it was.
Each state has a cap on attempts: past it, the user is told and the thread moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot import logs, metrics
from bot.admin.policy import Asker
from bot.admin.service import AdminService
from bot.assistants.base import (
    NO_OPTIONS,
    ApprovalRequest,
    AssistantBackend,
    AssistantRejected,
    AssistantUnavailable,
    RunCheck,
    RunState,
    StreamDelta,
    StreamStarted,
    ToolProgress,
    TurnOptions,
    UsageReport,
)
from bot.settings import Settings
from bot.store.leases import LeaseLost
from bot.store.repository import Store
from bot.store.turns import TurnWork
from bot.tools.approvals import ApprovalStore, Decision, as_request
from bot.turns.active import ActiveTurn
from bot.turns.delivery import THINKING_TEXT, Delivery
from bot.turns.ending import TurnEnding
from bot.turns.prompt import Prompt, PromptBuilder
from bot.turns.retry import RetryPolicy
from bot.turns.run_watch import RunWatch, retrying
from bot.turns.states import Outcome, TurnStatus
from bot.turns.turn_limits import over_budget, with_tool_context
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
        self._watch = RunWatch(
            backend=backend,
            delivery=delivery,
            settings=settings,
            usage=self._usage,
            wakeups=wakeups,
        )

    async def take_turn(self, work: TurnWork) -> None:
        active = ActiveTurn(self._store, work)
        metrics.turn_began(work.turn.id, [m.received_at for m in work.messages])
        logs.bind_turn(work.turn.id, work.conversation.team_id, work.conversation.channel_id)
        handed_over = False
        try:
            await self._advance(active)
        except LeaseLost:
            handed_over = True
            await self._delivery.abandon(active)
            raise
        except asyncio.CancelledError:
            if self.interrupting:  # the process stops now: end the live answer with a note
                await self._delivery.interrupt(active)
            handed_over = True
            self._delivery.forget(active)
            raise
        finally:
            if handed_over or active.status is TurnStatus.DONE:
                self._ending.forget(active)
        if active.status is TurnStatus.DONE:
            await self._ending.report(active)

    async def _advance(self, active: ActiveTurn) -> None:
        await self._enforce_attempt_caps(active)
        if active.status is TurnStatus.QUEUED:
            await self._start(active)
        if active.status is TurnStatus.RESUMING:
            await self._resume(active)
        if active.status is TurnStatus.RUNNING:
            await self._finish_run(active)
        if active.status is TurnStatus.POSTING:
            messages = active.messages
            newest_ts = messages[-1].ts if messages else active.conversation.thread_ts
            await self._delivery.deliver(
                active, after_ts=newest_ts, images=lambda: self._watch.produced_files(active)
            )

    async def _enforce_attempt_caps(self, active: ActiveTurn) -> None:
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
                active, chunks_posted=turn.chunks_posted, reply_ts=turn.reply_ts
            )

    # queued → running ---------------------------------------------------------------------

    async def _start(self, active: ActiveTurn) -> None:
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
            asker = Asker.of(conversation, [m.user_team_id for m in active.messages])
            options = self._admin.turn_options(channel, asker)
            if not asker.external_teams:  # Slack Connect users get no workspace search
                options = with_tool_context(
                    active, options, inbox=self._store.inbox, search=self._settings.slack_search
                )
            thread_id = await self._retrying(active, lambda _: self._ensure_thread(active))
            if self._settings.delivery == "stream":
                await self._retrying(
                    active,
                    lambda retry: self._stream(
                        active, thread_id=thread_id, prompt=prompt, retry=retry, options=options
                    ),
                )
                return
            run_id = await self._retrying(
                active,
                lambda retry: self._find_or_start_run(
                    active, thread_id=thread_id, prompt=prompt, retry=retry, options=options
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
            return
        await self._running(active, run_id)

    async def _running(self, active: ActiveTurn, run_id: str) -> None:
        await active.mark_running(run_id, self._backend.name)

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

    async def _find_run(self, active: ActiveTurn, *, thread_id: str, text: str) -> str | None:
        """The run an earlier attempt of this turn may have started (its request failed on
        our side, or the process died before storing the run's id)."""
        previous = await self._store.history.previous_run_id(
            active.conversation.id, turn_id=active.turn.id, backend=self._backend.name
        )
        return await self._backend.find_run(
            thread_id=thread_id, turn_key=active.key, text=text, previous_run_id=previous
        )

    async def _find_or_start_run(
        self,
        active: ActiveTurn,
        *,
        thread_id: str,
        prompt: Prompt,
        retry: bool,
        options: TurnOptions = NO_OPTIONS,
    ) -> str:
        if retry or not active.first_attempt:
            found = await self._find_run(active, thread_id=thread_id, text=prompt.text)
            if found is not None:
                return found
        await active.check_lease()
        return await self._backend.start_run(
            thread_id=thread_id,
            text=prompt.text,
            turn_key=active.key,
            images=prompt.images,
            options=options,
        )

    async def _stream(
        self,
        active: ActiveTurn,
        *,
        thread_id: str,
        prompt: Prompt,
        retry: bool,
        options: TurnOptions = NO_OPTIONS,
    ) -> None:
        """Start the run as a stream and show its words as they come.

        Once the run exists (its id stored), a broken stream falls back to polling that run;
        before that, the error goes to the caller, which retries or explains.
        """
        if retry or not active.first_attempt:
            found = await self._find_run(active, thread_id=thread_id, text=prompt.text)
            if found is not None:
                await self._running(active, found)
                return
        final: RunCheck | None = None
        await active.check_lease()
        try:
            async with asyncio.timeout(max(0.0, active.turn.deadline_at - time.time())):
                async for event in self._backend.stream_run(
                    thread_id=thread_id,
                    text=prompt.text,
                    turn_key=active.key,
                    images=prompt.images,
                    options=options,
                ):
                    if isinstance(event, StreamStarted):
                        await self._running(active, event.run_id)
                    elif isinstance(event, StreamDelta):
                        await self._delivery.show_words(active, event.text)
                    elif isinstance(event, ToolProgress):
                        await self._delivery.show_tool(active, event)
                    elif isinstance(event, UsageReport):
                        await self._usage.add(active, event.usage)
                    else:
                        final = event
        except (AssistantUnavailable, TimeoutError) as exc:
            if active.status is not TurnStatus.RUNNING:
                raise AssistantUnavailable(f"stream: {exc!r}") from exc
            log.warning(
                "turn %s: the stream broke (%r); polling the run instead", active.turn.id, exc
            )
        if final is not None:
            await self._record_outcome(active, thread_id=thread_id, check=final)

    # running → posting --------------------------------------------------------------------

    async def _finish_run(self, active: ActiveTurn) -> None:
        turn, conversation = active.turn, active.conversation
        assert turn.remote_run_id is not None and conversation.remote_id is not None
        check = await self._watch.until_finished(
            active, thread_id=conversation.remote_id, run_id=turn.remote_run_id
        )
        await self._record_outcome(active, thread_id=conversation.remote_id, check=check)

    async def _record_outcome(self, active: ActiveTurn, *, thread_id: str, check: RunCheck) -> None:
        turn = active.turn
        await self._usage.add(active, check.usage)
        if check.state is RunState.NEEDS_APPROVAL and check.approval is not None:
            await self._await_approval(active, check.approval)
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

    # tool approval: running → awaiting_approval → (click) resuming → running -----------

    async def _await_approval(self, active: ActiveTurn, request: ApprovalRequest) -> None:
        """Ask the person who asked, in the thread, and leave the turn waiting, stored."""
        turn = active.turn
        requester = active.messages[-1].user_id if active.messages else ""
        row = await self._approvals.add(
            turn_id=turn.id,
            conversation_id=turn.conversation_id,
            request=request,
            requester=requester,
        )
        if row.message_ts is None:
            ts = await self._delivery.ask_approval(
                active, request, approval_id=row.id, requester=requester
            )
            await self._approvals.set_message(row.id, ts)
        log.info("turn %s: %s (%s) waits for approval", turn.id, request.tool, request.server)
        await active.mark_awaiting_approval()
        if await self._approvals.decided_for(turn.id) is not None:
            # Clicked before the turn was stored as waiting: the click could not move it on.
            await active.mark_resuming()

    async def _resume(self, active: ActiveTurn) -> None:
        """Carry the run on with the stored decision; the user gets a fresh deadline."""
        turn, conversation = active.turn, active.conversation
        row = await self._approvals.decided_for(turn.id)
        if row is None or turn.remote_run_id is None or conversation.remote_id is None:
            log.error("turn %s: resuming, but no decided tool call is stored", turn.id)
            await active.mark_posting(Outcome.FAILED)
            return
        await active.new_deadline(time.time() + self._settings.answer_deadline_s)
        if row.decision == Decision.EXPIRED:
            log.info("turn %s: nobody answered the approval in time; denied", turn.id)
            await self._delivery.approval_expired(active, row, self._approvals.timeout_s)
        await self._delivery.show_working(active)
        thread_id, run_id = conversation.remote_id, turn.remote_run_id
        try:
            next_run = await self._retrying(
                active,
                lambda _: self._backend.resume_run(
                    thread_id=thread_id,
                    run_id=run_id,
                    turn_key=active.key,
                    approval=as_request(row),
                    allowed=row.decision == Decision.ALLOW,
                ),
            )
        except AssistantUnavailable as exc:
            log.warning("turn %s: could not carry on after approval: %s", turn.id, exc)
            await active.mark_posting(Outcome.UNAVAILABLE)
            return
        except AssistantRejected as exc:
            log.error("turn %s: carrying on after approval refused: %s", turn.id, exc)
            await active.mark_posting(Outcome.REJECTED)
            return
        await self._approvals.mark_resumed(row.id)
        await self._running(active, next_run)

    async def _retrying(self, active: ActiveTurn, call: Callable[[bool], Awaitable[T]]) -> T:
        return await retrying(call, policy=self._retry, deadline_at=active.turn.deadline_at)


HIDDEN_FROM_HISTORY = frozenset({THINKING_TEXT})
