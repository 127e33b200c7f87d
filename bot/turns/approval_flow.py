"""A tool call that waits for a person: running → awaiting_approval → (click) resuming →
running. The turn asks in the thread and waits, stored with its tool state; a click (or the
request's expiry) moves it to resuming, and the run carries on with the decision."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar

from bot.assistants.base import (
    ApprovalRequest,
    AssistantBackend,
    AssistantRejected,
    AssistantUnavailable,
    Resume,
    StreamStarted,
    TurnRequest,
)
from bot.settings import Settings
from bot.tools.approvals import ApprovalStore, Decision, as_request
from bot.turns.delivery import Delivery
from bot.turns.session import TurnSession
from bot.turns.states import Outcome

log = logging.getLogger(__name__)
T = TypeVar("T")
Retrying = Callable[[TurnSession, Callable[[bool], Awaitable[T]]], Awaitable[T]]


class ApprovalFlow:
    def __init__(
        self,
        *,
        backend: AssistantBackend,
        delivery: Delivery,
        approvals: ApprovalStore,
        settings: Settings,
    ) -> None:
        self._backend = backend
        self._delivery = delivery
        self._approvals = approvals
        self._settings = settings

    async def wait_for(self, session: TurnSession, request: ApprovalRequest) -> None:
        """Ask the person who asked, in the thread, and leave the turn waiting, stored."""
        active = session.active
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
                session, request, approval_id=row.id, requester=requester
            )
            await self._approvals.set_message(row.id, ts)
        log.info("turn %s: %s (%s) waits for approval", turn.id, request.tool, request.server)
        await session.mark_awaiting_approval()
        if await self._approvals.decided_for(turn.id) is not None:
            # Clicked before the turn was stored as waiting: the click could not move it on.
            await active.mark_resuming()

    async def resume(self, session: TurnSession, retrying: Retrying[str]) -> None:
        """Carry the run on with the stored decision; the user gets a fresh deadline."""
        active = session.active
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
        decided = Resume(
            conversation.remote_id,
            turn.remote_run_id,
            as_request(row),
            row.decision == Decision.ALLOW,
        )
        request = TurnRequest.resuming(decided, turn_key=active.key)
        try:
            next_run = await retrying(session, lambda _: self._run_to_follow(session, request))
        except AssistantUnavailable as exc:
            log.warning("turn %s: could not carry on after approval: %s", turn.id, exc)
            await active.mark_posting(Outcome.UNAVAILABLE)
            return
        except AssistantRejected as exc:
            log.error("turn %s: carrying on after approval refused: %s", turn.id, exc)
            await active.mark_posting(Outcome.REJECTED)
            return
        await self._approvals.mark_resumed(row.id)
        await session.mark_running(next_run, self._backend.name)

    async def _run_to_follow(self, session: TurnSession, request: TurnRequest) -> str:
        """Hand the decision to the model; the run the turn follows from now on."""
        events = self._backend.respond(request, session.tools)
        async with aclosing(events):
            async for event in events:
                if isinstance(event, StreamStarted):
                    return event.run_id
        raise AssistantUnavailable("carrying on after approval gave no run to follow")
