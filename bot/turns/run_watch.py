"""Waiting on the assistant: a call retried while its API is unavailable, a run followed
until it ends, and the files a finished run produced.

A run is followed by OpenAI's webhooks where they are set up (the wake-up ends the wait at
once, polling only as a slow safety net) and by polling otherwise. Each check yields the
run's tool calls since the last look (shown as they come), then where the run is; a check
(which may read a whole answer, on the chat backend) ends at the turn's deadline. Past the
deadline the run is cancelled and the turn expires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import TypeVar

from bot.assistants.base import (
    AssistantBackend,
    AssistantRejected,
    AssistantUnavailable,
    RunCheck,
    RunState,
    ToolProgress,
    UsageReport,
    is_unreachable,
)
from bot.attachments import Image
from bot.polling import poll_intervals
from bot.settings import Settings
from bot.turns.active import ActiveTurn
from bot.turns.delivery import Delivery
from bot.turns.retry import RetryPolicy
from bot.turns.session import TurnSession
from bot.turns.tool_loop import with_tools
from bot.turns.usage import UsageMeter
from bot.turns.wakeups import RunWakeups

log = logging.getLogger(__name__)
T = TypeVar("T")

CHECK_GRACE_S = 2.0
"""How long a check may still take once the deadline has passed (a run that ended just
then is still answered)."""


async def retrying(
    call: Callable[[bool], Awaitable[T]], *, policy: RetryPolicy, deadline_at: float
) -> T:
    """Retry an unavailable assistant API with the shared backoff until the deadline; a
    refused connection (nothing listens there) is explained at once instead.

    `call` learns whether it is a retry: a request that failed on our side may still have
    succeeded at OpenAI, so a retried run start looks for that run first.
    """
    attempt = 0
    while True:
        try:
            return await call(attempt > 0)
        except AssistantUnavailable as exc:
            attempt += 1
            delay = policy.delay(attempt)
            if is_unreachable(exc) or time.time() + delay >= deadline_at:
                raise
            await asyncio.sleep(delay)


class RunWatch:
    def __init__(
        self,
        *,
        backend: AssistantBackend,
        delivery: Delivery,
        settings: Settings,
        usage: UsageMeter,
        wakeups: RunWakeups,
    ) -> None:
        self._backend = backend
        self._delivery = delivery
        self._settings = settings
        self._usage = usage
        self._wakeups = wakeups  # OpenAI's webhooks wake the runs waiting here

    async def until_finished(
        self, session: TurnSession, *, thread_id: str, run_id: str
    ) -> RunCheck:
        """The run's end (or the turn's deadline). A run this process has just started is
        not checked before the first wait: nothing is there to see yet. A resumed turn
        checks at once (its webhook may have gone elsewhere)."""
        active = session.active
        turn = active.turn
        webhooks = self._settings.openai_webhooks
        net_s = self._settings.webhook_poll_s
        intervals = (
            poll_intervals(initial_s=net_s, max_s=net_s)
            if webhooks
            else poll_intervals(
                initial_s=self._settings.poll_initial_s, max_s=self._settings.poll_max_s
            )
        )
        if webhooks and active.first_attempt:
            await self._wakeups.wait(run_id, min(net_s, turn.deadline_at - time.time()))
        while True:
            try:
                check = await self._check(session, thread_id=thread_id, run_id=run_id)
            except TimeoutError:
                check = None
            except AssistantUnavailable as exc:
                log.warning("turn %s: checking the run failed (%s); still waiting", turn.id, exc)
            except AssistantRejected as exc:
                log.error("turn %s: the run cannot be read: %s", turn.id, exc)
                return RunCheck(RunState.FAILED, detail=str(exc))
            else:
                if check is not None and check.continued_as is not None:
                    await self._usage.add(active, check.usage)
                    run_id = check.continued_as
                    await session.mark_running(run_id, self._backend.name)
                    continue
                if check is not None and check.state.finished:
                    return check
            remaining = turn.deadline_at - time.time()
            if remaining <= 0:
                return await self.expire(active, thread_id=thread_id, run_id=run_id)
            await self._wakeups.wait(run_id, min(next(intervals), remaining))

    async def expire(self, active: ActiveTurn, *, thread_id: str, run_id: str) -> RunCheck:
        """No answer within the deadline: the run is cancelled."""
        log.warning("turn %s: no answer within the deadline; cancelling the run", active.turn.id)
        used = await self._backend.cancel_run(thread_id=thread_id, run_id=run_id)
        return RunCheck(RunState.EXPIRED, detail="deadline", usage=used)

    async def _check(self, session: TurnSession, *, thread_id: str, run_id: str) -> RunCheck:
        """One look at the run, its tool calls run (the turn's tool loop) and shown as they
        come; TimeoutError past the deadline (and its grace)."""
        active = session.active
        remaining = max(active.turn.deadline_at - time.time(), CHECK_GRACE_S)
        checked = self._backend.check_run(thread_id=thread_id, run_id=run_id, tools=session.tools)
        events = with_tools(checked, session.tools)
        check = RunCheck(RunState.IN_PROGRESS)
        async with asyncio.timeout(remaining), aclosing(events):
            async for event in events:
                if isinstance(event, ToolProgress):
                    await self._delivery.show_tool(session, event)
                elif isinstance(event, UsageReport):
                    await self._usage.add(active, event.usage)
                elif isinstance(event, RunCheck):
                    check = event
        return check

    async def produced_files(self, active: ActiveTurn) -> Sequence[Image]:
        """The images a finished run made (none when they cannot be read: the answer goes
        out without them)."""
        turn, conversation = active.turn, active.conversation
        if not turn.remote_run_id or conversation.remote_id is None:
            return []
        try:
            return await self._backend.produced_files(
                thread_id=conversation.remote_id, run_id=turn.remote_run_id
            )
        except (AssistantUnavailable, AssistantRejected) as exc:
            log.warning("turn %s: the assistant's files could not be read: %s", turn.id, exc)
            return []
