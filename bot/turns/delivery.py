"""What Slack shows of a turn: the working indicator, the live (streamed) message, and the
answer, posted exactly once, chunk by chunk, replacing the placeholder in place."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError

from bot import metrics
from bot.assistants.base import ApprovalRequest, ToolProgress, ToolStatus
from bot.attachments import Image
from bot.live import THINKING_TEXT, LiveMessage, open_live_message
from bot.replies import Reply, feedback_block, replies_for
from bot.slack.errors import SlackErrorKind, best_effort, classify, error_code
from bot.slack.gateway import SlackGateway
from bot.store.tool_models import ToolApproval
from bot.text.mentions import unping_markdown
from bot.text.slack_markup import slack_to_plain
from bot.tools.approvals import approval_blocks, approval_text, as_request, expired_blocks
from bot.turns.active import ActiveTurn
from bot.turns.session import TurnExit, TurnSession
from bot.turns.states import Outcome

log = logging.getLogger(__name__)

INTERRUPTED_NOTE = "_(interrupted, will resume)_"
"""Ends a live answer when the bot stops before it is written; the next start replaces it."""
INTERRUPT_TIMEOUT_S = 3.0
STATUS_TEXT = "is thinking…"


class Delivery:
    """Holds nothing of a turn: its live message and timings are the turn's session's."""

    def __init__(self, slack: SlackGateway, *, streamed: bool) -> None:
        self._slack = slack
        self._streamed = streamed

    # Before the answer ------------------------------------------------------------------

    async def show_working(self, active: ActiveTurn) -> None:
        """Let the user see that the bot works: the pane's status, and (when answers are not
        streamed) a placeholder message that the answer will replace. A streamed answer's
        message starts with the model's first words (`show_words`)."""
        turn, place, messages = active.turn, active.place, active.messages
        first = messages[0] if messages else None
        await active.check_lease()
        if place.surface == "assistant":
            await self._slack.set_status(place, STATUS_TEXT)
            if active.first_attempt and first is not None:
                await self._slack.set_title(place, slack_to_plain(first.text, user_names={}))
        if turn.placeholder_ts is not None or first is None or self._streamed:
            return
        if place.surface == "assistant":
            return
        if not active.first_attempt and await self._adopt_placeholder(active, messages[-1].ts):
            return
        await active.check_lease()
        await active.record_placeholder(await self._slack.post(place, THINKING_TEXT))

    async def _adopt_placeholder(self, active: ActiveTurn, after_ts: str) -> bool:
        """A process that died right after posting the placeholder never stored its ts; take
        that placeholder over instead of leaving it "thinking" forever next to a second one."""
        ts = await self._slack.find_bot_message(
            active.place, after_ts=after_ts, texts={"", THINKING_TEXT}
        )
        if ts is None:
            return False
        await active.record_placeholder(ts)
        return True

    async def show_words(self, session: TurnSession, text: str) -> None:
        """More of the answer, as the model writes it (streamed delivery only): the first
        words start the live message, whose ts is stored at once as the placeholder."""
        active = session.active
        _first_words_out(session, time.time())
        if session.live is not None:
            await active.check_lease()
            await session.live.append(text)
            return
        if text and self._may_open_live(active):
            await self._open_live(session, first_words=text)

    def _may_open_live(self, active: ActiveTurn) -> bool:
        """Only a turn's first attempt opens a live message. An earlier attempt may have
        started one and never stored its ts (it died, or was paused, between Slack's reply and
        the save); the finished answer then takes that message over (`_adopt_stream`) rather
        than streaming a second one beside it."""
        return self._streamed and active.first_attempt and active.turn.placeholder_ts is None

    async def _open_live(self, session: TurnSession, *, first_words: str) -> LiveMessage:
        """Start the turn's live message and store its ts at once as the placeholder."""
        active = session.active
        await active.check_lease()
        messages = active.messages
        live = await open_live_message(
            self._slack,
            active.place,
            first_words=first_words,
            team_id=active.conversation.team_id,
            user_id=messages[0].user_id if messages else "",
        )
        session.live = live
        await active.record_placeholder(live.ts)
        return live

    async def show_tool(self, session: TurnSession, progress: ToolProgress) -> None:
        """A tool call starting or ending: a task in the streamed answer, and in the
        assistant pane the status line names the tool while it runs."""
        active = session.active
        await active.check_lease()
        live = session.live
        if live is None and self._may_open_live(active):
            live = await self._open_live(session, first_words="")
        if live is not None:
            await live.task(progress)
        if active.place.surface == "assistant":
            running = progress.status is ToolStatus.IN_PROGRESS
            status = f"is using {progress.title}…" if running else STATUS_TEXT
            await self._slack.set_status(active.place, status)

    async def ask_approval(
        self, session: TurnSession, request: ApprovalRequest, *, approval_id: int, requester: str
    ) -> str:
        """Stop the live message where it is and ask, with Allow/Deny buttons, in the thread.
        The answer later replaces the placeholder as usual."""
        active = session.active
        await self._end_live_message(session)
        if active.place.surface == "assistant":
            await self._slack.set_status(active.place, "")
        await active.check_lease()
        return await self._slack.post(
            active.place,
            approval_text(request, requester=requester),
            blocks=approval_blocks(request, requester=requester, approval_id=approval_id),
        )

    async def approval_expired(
        self, active: ActiveTurn, row: ToolApproval, timeout_s: float
    ) -> None:
        """The card of a request nobody answered: its buttons go, and it says why."""
        if row.message_ts is None:
            return
        await active.check_lease()
        blocks = expired_blocks(as_request(row), timeout_s=timeout_s)
        unchanged = f"turn {active.turn.id}: the expired card was not updated"
        async with best_effort(unchanged, logger=log):
            await self._slack.update(
                active.place, row.message_ts, f"{row.tool}: expired", blocks=blocks
            )

    async def tell(self, active: ActiveTurn, text: str) -> None:
        """A short note in the thread (files that could not be read)."""
        await active.check_lease()
        await self._slack.post(active.place, text)

    # The answer -------------------------------------------------------------------------

    async def deliver(
        self, session: TurnSession, *, after_ts: str, images: Sequence[Image] = ()
    ) -> None:
        """Post what is left of the turn's reply and the images the assistant made (fetched
        by the runner before); the last step is stored with "done"."""
        active = session.active
        turn = active.turn
        outcome = turn.outcome or Outcome.FAILED
        answer = await self._slack.named_mentions(active.place.team, turn.answer or "")
        chunks = replies_for(outcome=outcome, answer=answer, turn_id=turn.id)
        reply_ts = turn.reply_ts
        try:
            if await self._complete_live_message(session):
                await self._upload_produced(active, images)
                await self.finish(session, chunks_posted=len(chunks), reply_ts=turn.placeholder_ts)
                return
            for index in range(turn.chunks_posted, len(chunks)):
                reply_ts = await self._post_chunk(
                    session, chunks[index], first=index == 0, after_ts=reply_ts or after_ts
                )
                if index < len(chunks) - 1:
                    await active.record_chunks(index + 1, reply_ts)
            await self._upload_produced(active, images)
        except SlackApiError as exc:
            metrics.slack_error(error_code(exc))
            self._slack.token_failed(active.place.team, exc)
            if not classify(exc).drops_answer:
                raise
            error = error_code(exc)
            log.error("turn %s: Slack refused the answer (%s); dropping it", turn.id, error)
        await self.finish(session, chunks_posted=len(chunks), reply_ts=reply_ts)

    async def _complete_live_message(self, session: TurnSession) -> bool:
        """A completed answer streamed by this attempt ends its own stream: the rest of its
        words and the feedback buttons in one call, nothing re-rendered."""
        active, live = session.active, session.live
        turn = active.turn
        if live is None or turn.outcome != Outcome.COMPLETED or not turn.answer:
            return False
        await active.check_lease()
        if not await live.complete(turn.answer, blocks=[feedback_block(turn.id)]):
            return False
        session.take_live()
        return True

    async def _upload_produced(self, active: ActiveTurn, images: Sequence[Image]) -> None:
        if images and not active.turn.files_posted:
            await active.check_lease()
            await self._slack.upload_images(active.place, images)

    async def finish(
        self, session: TurnSession, *, chunks_posted: int, reply_ts: str | None
    ) -> None:
        """The turn is done; it is counted, with its latencies (posted at once, an answer's
        first words are the whole answer)."""
        active = session.active
        if active.place.surface == "assistant":
            await self._slack.set_status(active.place, "")
        await active.mark_done(chunks_posted=chunks_posted, reply_ts=reply_ts)
        now = time.time()
        _first_words_out(session, now)
        metrics.answered(active.turn.outcome or Outcome.FAILED, session.timings.answered(now))

    async def _post_chunk(
        self, session: TurnSession, reply: Reply, *, first: bool, after_ts: str
    ) -> str:
        """Post one chunk exactly once: the first replaces the placeholder; on a resumed turn,
        a chunk already in the thread (posted just before a crash) is not posted again."""
        active = session.active
        turn, place = active.turn, active.place
        if first and turn.placeholder_ts is None and not active.first_attempt and self._streamed:
            await self._adopt_stream(active, after_ts)
        if first and turn.placeholder_ts is not None:
            await self._end_live_message(session)
            await active.check_lease()
            try:
                await self._slack.update(
                    place, turn.placeholder_ts, reply.text, blocks=reply.blocks
                )
                return turn.placeholder_ts
            except SlackApiError as exc:
                if classify(exc) is not SlackErrorKind.GONE:
                    raise
        if not active.first_attempt:
            posted = await self._slack.find_bot_message(
                place, after_ts=after_ts, texts={reply.text}
            )
            if posted is not None:
                return posted
        await active.check_lease()
        return await self._slack.post(place, reply.text, blocks=reply.blocks)

    async def _adopt_stream(self, active: ActiveTurn, after_ts: str) -> None:
        """A process that died right after starting the stream (its first words shown)
        never stored its ts: the answer replaces that message rather than leaving it
        streaming next to a second one."""
        answer = active.turn.answer
        if not answer:
            return
        shown = unping_markdown(await self._slack.named_mentions(active.place.team, answer))
        ts = await self._slack.find_bot_message(
            active.place, after_ts=after_ts, texts=set(), prefix_of=shown
        )
        if ts is not None:
            await active.record_placeholder(ts)

    async def _end_live_message(self, session: TurnSession) -> None:
        """A streamed placeholder must stop streaming before the answer can replace it."""
        active = session.active
        turn = active.turn
        live = session.take_live()
        if live is not None:
            await active.check_lease()
            await live.finish()
        elif self._streamed and not active.first_attempt and turn.placeholder_ts:
            await self._slack.stop_stream(active.place, turn.placeholder_ts)

    async def let_go(self, session: TurnSession, how: TurnExit) -> None:
        """The attempt ends: what becomes of a live message it still has open."""
        live = session.take_live()
        if live is None:
            return
        if how is TurnExit.STOPPING:
            await self._interrupt(session.active, live)
        elif how is TurnExit.LEASE_LOST:
            await self._abandon(session.active, live)

    async def _interrupt(self, active: ActiveTurn, live: LiveMessage) -> None:
        """The process stops now with the answer half-written: its live message ends with a
        short note instead of streaming for ever; the resumed turn replaces it in place."""
        try:
            async with asyncio.timeout(INTERRUPT_TIMEOUT_S):
                await live.interrupt(INTERRUPTED_NOTE)
        except (SlackApiError, TimeoutError, OSError) as exc:
            log.warning("turn %s: could not mark the answer interrupted (%r)", active.turn.id, exc)

    async def _abandon(self, active: ActiveTurn, live: LiveMessage) -> None:
        """The lease was lost. A live message this process started but could not store (it
        was paused between checking its lease and Slack's reply) belongs to no attempt: unless
        the process that took over adopted it, it is deleted rather than left streaming."""
        if live.ts == active.turn.placeholder_ts:
            return
        if await active.store.turns.turn_shows(active.turn.id, live.ts):
            return
        log.info(
            "turn %s: removing a live message started after the lease was lost", active.turn.id
        )
        await self._slack.stop_stream(active.place, live.ts)
        await self._slack.delete(active.place, live.ts)


def _first_words_out(session: TurnSession, now: float) -> None:
    """The answer's first words go out: counted the first time in the turn's session."""
    first_words_s = session.timings.words_out(now)
    if first_words_s is not None:
        metrics.first_words(first_words_s)
