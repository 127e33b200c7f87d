"""The conversation service: what the Slack listeners call, in front of intake, the
dispatcher and the turn engine (which bot.bootstrap builds and hands to it).

    listener → intake (store, dedupe, wake) → dispatcher (leases) → turns (runner, prompt,
    delivery) → assistant backend / store → Slack
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from bot.dispatcher import Dispatcher
from bot.intake import Acceptance, Intake
from bot.settings import Settings
from bot.slack.gateway import Place, SlackGateway
from bot.store.inbox import NewMessage
from bot.store.repository import Store
from bot.tools.approvals import (
    CLICK_NOTES,
    ApprovalStore,
    Click,
    Workspace,
    as_request,
    decided_blocks,
)
from bot.turns.runner import TurnRunner

log = logging.getLogger(__name__)

FEEDBACK_THANKS = "Thanks for the feedback! It helps the people who run me improve the answers."


class ConversationService:
    """Built once, with its parts, by bot.bootstrap."""

    def __init__(
        self,
        *,
        store: Store,
        slack: SlackGateway,
        intake: Intake,
        dispatcher: Dispatcher,
        runner: TurnRunner,
        approvals: ApprovalStore,
        settings: Settings,
    ) -> None:
        self._store = store
        self._slack = slack
        self._intake = intake
        self._dispatcher = dispatcher
        self._runner = runner
        self._approvals = approvals
        # OAuth installs share one database: a vote must name an answer of its own workspace.
        self._by_team = settings.oauth
        self._agent_view = settings.agent_view

    # Called by the Slack listeners, inside the ack --------------------------------------

    async def accept(self, message: NewMessage) -> Acceptance:
        """Store the message durably and wake the dispatcher; never waits for the assistant."""
        acceptance, conversation_id = await self._intake.accept(message)
        if conversation_id is not None:
            self._dispatcher.hint(conversation_id)
        return acceptance

    async def accept_dm(self, message: NewMessage) -> Acceptance:
        """A DM written at the top level. In the Agent messaging experience it starts its own
        thread, answered like the assistant pane (status, title, streaming), with the channel
        the person has in view; otherwise it is a plain DM."""
        if self._agent_view:
            message = dataclasses.replace(message, surface="assistant")
            viewing = await self._store.inbox.user_context(message.team_id, message.user_id)
            await self._store.inbox.set_context_channel(
                message.team_id,
                message.channel_id,
                message.thread_ts,
                viewing,
                enterprise_id=message.enterprise_id,
            )
        return await self.accept(message)

    async def greet_once(self, team_id: str, user_id: str) -> bool:
        return await self._store.inbox.greet_once(team_id, user_id)

    async def note_user_context(self, team_id: str, user_id: str, channel_id: str | None) -> None:
        await self._store.inbox.set_user_context(team_id, user_id, channel_id)

    async def record_feedback(
        self,
        *,
        turn_id: int,
        user_id: str,
        value: str,
        channel_id: str,
        thread_ts: str,
        team_id: str | None = None,
        enterprise_id: str | None = None,
    ) -> None:
        """Store a 👍/👎 click (the latest per user wins) and thank the user privately; a
        click naming another workspace's answer is ignored."""
        if not await self._store.feedback.record_feedback(
            turn_id=turn_id,
            user_id=user_id,
            value=value,
            team_id=team_id if self._by_team else None,
        ):
            log.warning("feedback: turn %s is another workspace's; ignored", turn_id)
            return
        counts = await self._store.feedback.feedback_counts()
        log.info(
            "feedback: turn %s got %s (all answers: %s up, %s down)",
            turn_id,
            value,
            counts.get("up", 0),
            counts.get("down", 0),
        )
        if channel_id:
            place = Place(
                channel_id, thread_ts, "channel", team_id=team_id or "", enterprise_id=enterprise_id
            )
            self._intake.in_background(self._slack.post_ephemeral(place, user_id, FEEDBACK_THANKS))

    @property
    def scoped_by_team(self) -> bool:
        return self._by_team

    async def decide_tool_call(
        self,
        *,
        approval_id: int,
        user_id: str,
        allowed: bool,
        channel_id: str,
        thread_ts: str,
        team_id: str = "",
        enterprise_id: str | None = None,
    ) -> Click:
        """An Allow/Deny click: stored (only the asker's counts) and the turn woken. The
        card and the notes go out in the workspace of the stored conversation (the click's
        own, `team_id`/`enterprise_id`, only when nothing is stored)."""
        outcome, row, workspace = await self._approvals.decide(
            approval_id=approval_id, user_id=user_id, allowed=allowed
        )
        where = workspace or Workspace(team_id, enterprise_id)
        place = Place(
            channel_id,
            thread_ts,
            "channel",
            team_id=where.team_id,
            enterprise_id=where.enterprise_id,
        )
        if outcome is Click.EXPIRED and row is not None:
            self._dispatcher.hint(row.conversation_id)  # its turn carries on, as denied
        if outcome is not Click.RECORDED or row is None:
            log.info("tool approval %s: click by %s not taken (%s)", approval_id, user_id, outcome)
            if channel_id:
                note = CLICK_NOTES[outcome]
                self._intake.in_background(self._slack.post_ephemeral(place, user_id, note))
            return outcome
        log.info("tool approval %s: %s", approval_id, row.decision)
        self._dispatcher.hint(row.conversation_id)
        if row.message_ts is not None:
            blocks = decided_blocks(as_request(row), allowed=allowed, user_id=user_id)
            text = f"{row.tool}: {'allowed' if allowed else 'denied'}"
            self._intake.in_background(
                self._slack.update(place, row.message_ts, text, blocks=blocks)
            )
        return outcome

    async def is_known_thread(self, team_id: str, channel_id: str, thread_ts: str) -> bool:
        return await self._store.inbox.is_known_thread(team_id, channel_id, thread_ts)

    async def note_context_channel(
        self,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        context_channel_id: str | None,
        *,
        enterprise_id: str | None = None,
    ) -> None:
        await self._store.inbox.set_context_channel(
            team_id, channel_id, thread_ts, context_channel_id, enterprise_id=enterprise_id
        )

    # Running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Work on conversations until `shutdown` is called."""
        await self._dispatcher.run()

    @property
    def in_hand(self) -> int:
        """Conversations this process is working on now."""
        return self._dispatcher.in_hand

    async def shutdown(self, *, stop_now: asyncio.Event | None = None) -> int:
        """Stop taking work; let running turns finish within the grace period (or until
        `stop_now`); live answers of the turns cut short end with a note. Returns how many."""

        def interrupt() -> None:
            self._runner.interrupting = True

        interrupted = await self._dispatcher.shutdown(stop_now=stop_now, interrupt=interrupt)
        self._intake.cancel_background()
        return interrupted
