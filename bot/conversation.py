"""The conversation service: Slack messages in, one assistant turn at a time, answers out.

`accept` stores a message durably (before Slack gets its ack) and wakes the dispatcher
(`bot/dispatcher.py`), which leases conversations with work and hands each turn to
`_take_turn`, one turn at a time per conversation:

    queued  → the user sees that the bot is working; the run is started   → running
    running → the run is polled (or streamed) until it ends                → posting
    posting → the answer (or a clear error) is posted, chunk by chunk      → done

Each transition is stored before the next step, so a restart resumes a turn where it was.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError

from bot import logs, metrics
from bot.admin.service import AdminService
from bot.assistants.base import (
    NO_OPTIONS,
    AssistantBackend,
    AssistantRejected,
    AssistantUnavailable,
    RunCheck,
    RunState,
    StreamDelta,
    StreamStarted,
    TurnOptions,
)
from bot.attachments import (
    MAX_IMAGE_BYTES,
    MAX_TEXT_BYTES,
    Image,
    parse_files,
    plan_files,
    quoted_text_file,
    refusal_note,
)
from bot.dispatcher import Dispatcher
from bot.limits import UserRateLimiter
from bot.live import LiveMessage, open_live_message
from bot.polling import poll_intervals
from bot.replies import Reply, replies_for
from bot.settings import Settings
from bot.slack_api import (
    ASSISTANT_AUTHOR,
    FileUnavailable,
    Place,
    SlackGateway,
    is_permanent_slack_error,
)
from bot.store.models import Conversation, InboxMessage, Turn
from bot.store.repository import NewMessage, Store, TurnWork
from bot.text import build_turn_input, mentioned_user_ids, slack_to_plain

log = logging.getLogger(__name__)

IncomingMessage = NewMessage
T = TypeVar("T")

MAX_ATTEMPTS = 5
THINKING_TEXT = "_Thinking…_"
STATUS_TEXT = "is thinking…"
FEEDBACK_THANKS = "Thanks for the feedback! It helps the people who run me improve the answers."
RATE_LIMITED_TEXT = (
    "You're sending messages faster than I can answer them. Please wait a minute and try again."
)


class Acceptance(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    NOT_ALLOWED = "not_allowed"


@dataclass(frozen=True)
class Prompt:
    text: str
    images: tuple[Image, ...] = ()


class ConversationService:
    def __init__(
        self,
        *,
        store: Store,
        backend: AssistantBackend,
        slack: SlackGateway,
        settings: Settings,
        owner: str | None = None,
    ) -> None:
        self._store = store
        self._backend = backend
        self._slack = slack
        self._settings = settings
        self._limiter = UserRateLimiter(settings.user_rate_limit_per_minute)
        self._dispatcher = Dispatcher(
            store=store, settings=settings, take_turn=self._take_turn, owner=owner
        )
        self._background: set[asyncio.Task[Any]] = set()
        self._live: dict[int, LiveMessage] = {}
        self.admin = AdminService(store.engine, settings)  # issue 10 wiring: admin part

    # Intake (called by the Slack listeners, inside the ack) ---------------------------

    async def accept(self, message: IncomingMessage) -> Acceptance:
        """Store the message durably and wake the dispatcher; never waits for the assistant."""
        if not self._is_allowed(message):
            return Acceptance.NOT_ALLOWED
        if not self._limiter.allow(message.user_id):
            self._in_background(self._tell_rate_limited(message))
            return Acceptance.RATE_LIMITED
        conversation_id = await self._store.record_message(message)
        if conversation_id is None:
            return Acceptance.DUPLICATE
        self._dispatcher.hint(conversation_id)
        return Acceptance.ACCEPTED

    def _is_allowed(self, message: IncomingMessage) -> bool:
        teams = self._settings.allowed_team_ids
        channels = self._settings.allowed_channel_ids
        if teams and message.team_id not in teams:
            return False
        return not (
            channels and message.surface == "channel" and message.channel_id not in channels
        )

    async def record_feedback(
        self, *, turn_id: int, user_id: str, value: str, channel_id: str, thread_ts: str
    ) -> None:
        """Store a 👍/👎 click (the latest per user wins) and thank the user privately."""
        await self._store.record_feedback(turn_id=turn_id, user_id=user_id, value=value)
        counts = await self._store.feedback_counts()
        log.info(
            "feedback: turn %s got %s (all answers: %s up, %s down)",
            turn_id,
            value,
            counts.get("up", 0),
            counts.get("down", 0),
        )
        if channel_id:
            place = Place(channel_id, thread_ts, "channel")
            self._in_background(self._slack.post_ephemeral(place, user_id, FEEDBACK_THANKS))

    async def is_known_thread(self, team_id: str, channel_id: str, thread_ts: str) -> bool:
        return await self._store.is_known_thread(team_id, channel_id, thread_ts)

    async def note_context_channel(
        self, team_id: str, channel_id: str, thread_ts: str, context_channel_id: str | None
    ) -> None:
        await self._store.set_context_channel(team_id, channel_id, thread_ts, context_channel_id)

    async def _tell_rate_limited(self, message: IncomingMessage) -> None:
        place = Place(message.channel_id, message.thread_ts, message.surface)
        await self._slack.post_ephemeral(place, message.user_id, RATE_LIMITED_TEXT)

    def _in_background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            log.warning("background Slack call failed: %r", task.exception())

    # Running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Work on conversations until `shutdown` is called."""
        await self._dispatcher.run()

    async def shutdown(self) -> None:
        """Stop taking work; let running turns finish within the grace period."""
        await self._dispatcher.shutdown()
        for task in list(self._background):
            task.cancel()

    # One turn ------------------------------------------------------------------------

    async def _take_turn(self, work: TurnWork) -> None:
        conversation, turn = work.conversation, work.turn
        metrics.turn_began(turn.id, [m.received_at for m in work.messages])  # issue 10 wiring
        logs.bind_turn(turn.id, conversation.team_id, conversation.channel_id)  # issue 10 wiring
        place = Place(conversation.channel_id, conversation.thread_ts, conversation.surface)
        if turn.attempts > MAX_ATTEMPTS and turn.status != "posting":
            log.error("turn %s: giving up after %s attempts", turn.id, MAX_ATTEMPTS)
            await self._save(turn, status="posting", outcome="unavailable")
        if turn.status == "queued":
            await self._start(conversation, turn, place, work.messages)
        if turn.status == "running":
            await self._finish_run(turn, conversation)
        if turn.status == "posting":
            newest_ts = work.messages[-1].ts if work.messages else conversation.thread_ts
            await self._deliver(turn, place, conversation, after_ts=newest_ts)

    async def _start(
        self,
        conversation: Conversation,
        turn: Turn,
        place: Place,
        messages: Sequence[InboxMessage],
    ) -> None:
        await self._show_working(turn, place, messages, team_id=conversation.team_id)
        # issue 10 wiring: a reached budget ends the turn with its reply, before any OpenAI call
        if messages and await self._over_budget(conversation, turn, messages[0].user_id):
            return
        try:
            prompt = await self._prompt(conversation, turn, place, messages)
            if prompt is None:
                await self._save(turn, status="posting", outcome="empty")
                return
            # issue 10 wiring: the channel's own model and instructions, read for every turn
            options = await self.admin.options_for(conversation.team_id, conversation.channel_id)
            thread_id = await self._retrying(turn, lambda _: self._ensure_thread(conversation))
            if self._settings.delivery == "stream":
                await self._retrying(
                    turn,
                    lambda retry: self._stream(
                        turn, thread_id=thread_id, prompt=prompt, retry=retry, options=options
                    ),
                )
                return
            run_id = await self._retrying(
                turn,
                lambda retry: self._find_or_start_run(
                    turn, thread_id=thread_id, prompt=prompt, retry=retry, options=options
                ),
            )
        except AssistantUnavailable as exc:
            metrics.openai_error("unavailable")  # issue 10 wiring
            log.warning("turn %s: assistant unavailable: %s", turn.id, exc)
            await self._save(turn, status="posting", outcome="unavailable")
            return
        except AssistantRejected as exc:
            metrics.openai_error("rejected")  # issue 10 wiring
            log.error("turn %s: assistant refused the request: %s", turn.id, exc)
            await self._save(turn, status="posting", outcome="rejected")
            return
        await self._save(turn, status="running", remote_run_id=run_id, backend=self._backend.name)

    async def _over_budget(self, conversation: Conversation, turn: Turn, user_id: str) -> bool:
        """issue 10 wiring: True when a limit is reached; the turn then ends with its reply."""
        refusal = await self.admin.refusal_for(
            conversation.team_id, conversation.channel_id, user_id
        )
        if refusal is None:
            return False
        log.info("turn %s: not asked, %s reached", turn.id, refusal.limit.source)
        await self._save(turn, status="posting", outcome="over_budget", answer=refusal.text())
        return True

    async def _show_working(
        self, turn: Turn, place: Place, messages: Sequence[InboxMessage], *, team_id: str
    ) -> None:
        """Let the user see that the bot works: the pane's status, and a placeholder message
        (a live, streaming one when answers are streamed) that the answer will replace."""
        first = messages[0] if messages else None
        if place.surface == "assistant":
            await self._slack.set_status(place, STATUS_TEXT)
            if turn.attempts == 1 and first is not None:
                await self._slack.set_title(place, slack_to_plain(first.text, user_names={}))
        streamed = self._settings.delivery == "stream"
        if turn.placeholder_ts is not None or first is None:
            return
        if not streamed and place.surface == "assistant":
            return
        if turn.attempts > 1 and await self._adopt_placeholder(turn, place, messages[-1].ts):
            return
        if streamed:
            live = await open_live_message(
                self._slack,
                place,
                placeholder_text=THINKING_TEXT,
                team_id=team_id,
                user_id=first.user_id,
            )
            self._live[turn.id] = live
            await self._save(turn, placeholder_ts=live.ts)
        else:
            await self._save(turn, placeholder_ts=await self._slack.post(place, THINKING_TEXT))

    async def _adopt_placeholder(self, turn: Turn, place: Place, after_ts: str) -> bool:
        """A process that died right after posting the placeholder never stored its ts; take
        that placeholder over instead of leaving it "thinking" forever next to a second one."""
        ts = await self._slack.find_bot_message(place, after_ts=after_ts, texts={"", THINKING_TEXT})
        if ts is None:
            return False
        await self._save(turn, placeholder_ts=ts)
        return True

    async def _stream(
        self,
        turn: Turn,
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
        if retry or turn.attempts > 1:
            found = await self._backend.find_run(
                thread_id=thread_id, turn_key=f"turn-{turn.id}", text=prompt.text
            )
            if found is not None:
                await self._save(
                    turn, status="running", remote_run_id=found, backend=self._backend.name
                )
                return
        live = self._live.get(turn.id)
        final: RunCheck | None = None
        try:
            async with asyncio.timeout(max(0.0, turn.deadline_at - time.time())):
                async for event in self._backend.stream_run(
                    thread_id=thread_id,
                    text=prompt.text,
                    turn_key=f"turn-{turn.id}",
                    images=prompt.images,
                    options=options,
                ):
                    if isinstance(event, StreamStarted):
                        await self._save(
                            turn,
                            status="running",
                            remote_run_id=event.run_id,
                            backend=self._backend.name,
                        )
                    elif isinstance(event, StreamDelta):
                        metrics.first_words(turn.id)  # issue 10 wiring
                        if live is not None:
                            await live.append(event.text)
                    else:
                        final = event
        except (AssistantUnavailable, TimeoutError) as exc:
            if turn.status != "running":
                raise AssistantUnavailable(f"stream: {exc!r}") from exc
            log.warning("turn %s: the stream broke (%r); polling the run instead", turn.id, exc)
        if final is not None:
            await self._record_outcome(turn, thread_id=thread_id, check=final)

    async def _prompt(
        self, conversation: Conversation, turn: Turn, place: Place, messages: Sequence[InboxMessage]
    ) -> Prompt | None:
        """What the assistant gets for this turn: the text, quoted text files, and images.

        None when there is nothing to ask (an empty mention). Files that cannot be read are
        named to the user in the thread, once.
        """
        text = await self._turn_input(conversation, turn, messages)
        plan = plan_files([f for m in messages for f in parse_files(m.files)])
        images: list[Image] = []
        for file in plan.images:
            try:
                data = await self._slack.download(file.url, max_bytes=MAX_IMAGE_BYTES)
                images.append(Image(file.name, file.mimetype, data))
            except (FileUnavailable, aiohttp.ClientError) as exc:
                log.warning("turn %s: an image could not be downloaded: %r", turn.id, exc)
                plan.refused.append(f"{file.name} (Slack would not let me download it)")
        for file in plan.texts:
            try:
                data = await self._slack.download(file.url, max_bytes=MAX_TEXT_BYTES)
                text = f"{text}\n\n{quoted_text_file(file.name, data)}".strip()
            except (FileUnavailable, aiohttp.ClientError) as exc:
                log.warning("turn %s: a file could not be downloaded: %r", turn.id, exc)
                plan.refused.append(f"{file.name} (Slack would not let me download it)")
        if plan.refused and turn.attempts == 1:
            await self._slack.post(place, refusal_note(plan.refused))
        if not text and images:
            text = "(The user sent the attached image without a question.)"
        return Prompt(text=text, images=tuple(images)) if text.strip() else None

    async def _turn_input(
        self, conversation: Conversation, turn: Turn, messages: Sequence[InboxMessage]
    ) -> str:
        history = await self._history_for(conversation, turn, messages)
        texts = [m.text for m in messages] + [text for _, text, _ in history]
        names = await self._slack.display_names(
            [m.user_id for m in messages]
            + [author for author, _, from_bot in history if not from_bot]
            + [user_id for text in texts for user_id in mentioned_user_ids(text)]
        )
        bot = self._slack.bot_user_id
        new = [
            (
                names.get(m.user_id, m.user_id),
                slack_to_plain(m.text, user_names=names, bot_user_id=bot),
            )
            for m in messages
        ]
        new = [(author, text) for author, text in new if text]
        if not new:
            return ""
        earlier = [
            (
                ASSISTANT_AUTHOR if from_bot else names.get(author, author),
                slack_to_plain(text, user_names=names, bot_user_id=bot),
            )
            for author, text, from_bot in history
        ]
        text = build_turn_input(new, history=earlier, is_group=conversation.surface == "channel")
        if conversation.context_channel_id:
            viewing = f"<#{conversation.context_channel_id}>"
            text = f"(The user is currently looking at the channel {viewing}.)\n\n{text}"
        return text

    async def _history_for(
        self, conversation: Conversation, turn: Turn, messages: Sequence[InboxMessage]
    ) -> list[tuple[str, str, bool]]:
        """Earlier Slack messages the assistant has not seen: (author id, text, from bot).

        Needed when the bot is first mentioned in the middle of a thread, or when the thread
        continues on a backend other than the one it started on.
        """
        if not messages:
            return []
        ran_on = await self._backends_that_ran_before(conversation, turn)
        if self._backend.name in ran_on:
            return []
        started_mid_thread = messages[0].ts != conversation.thread_ts
        switched_backend = bool(ran_on) or (
            conversation.remote_id is not None and conversation.backend != self._backend.name
        )
        if not (started_mid_thread or switched_backend):
            return []
        history = await self._slack.thread_history(
            conversation.channel_id, conversation.thread_ts, before_ts=messages[0].ts
        )
        return [
            (message.author_id, message.text, message.from_bot)
            for message in history
            if message.text != THINKING_TEXT and (switched_backend or not message.from_bot)
        ]

    async def _backends_that_ran_before(self, conversation: Conversation, turn: Turn) -> set[str]:
        """The backends earlier turns of this conversation ran on.

        On a first attempt the stored remote thread tells it without a query: it was made by
        an earlier turn. A retried turn may have made the remote thread itself just before a
        crash, before its first run, so only the turns' own records tell.
        """
        if conversation.remote_id is None:
            return set()
        if turn.attempts <= 1 and conversation.backend is not None:
            return {conversation.backend}
        return await self._store.backends_before(conversation.id, turn_id=turn.id)

    async def _ensure_thread(self, conversation: Conversation) -> str:
        if conversation.remote_id is not None and conversation.backend == self._backend.name:
            return conversation.remote_id
        remote_id = await self._backend.create_thread(
            metadata={
                "slack_team": conversation.team_id,
                "slack_channel": conversation.channel_id,
                "slack_thread_ts": conversation.thread_ts,
            }
        )
        await self._store.set_remote_thread(
            conversation.id, backend=self._backend.name, remote_id=remote_id
        )
        conversation.remote_id = remote_id
        conversation.backend = self._backend.name
        return remote_id

    async def _find_or_start_run(
        self,
        turn: Turn,
        *,
        thread_id: str,
        prompt: Prompt,
        retry: bool,
        options: TurnOptions = NO_OPTIONS,
    ) -> str:
        turn_key = f"turn-{turn.id}"
        if retry or turn.attempts > 1:
            found = await self._backend.find_run(
                thread_id=thread_id, turn_key=turn_key, text=prompt.text
            )
            if found is not None:
                return found
        return await self._backend.start_run(
            thread_id=thread_id,
            text=prompt.text,
            turn_key=turn_key,
            images=prompt.images,
            options=options,
        )

    async def _finish_run(self, turn: Turn, conversation: Conversation) -> None:
        assert turn.remote_run_id is not None and conversation.remote_id is not None
        check = await self._wait_for_run(
            turn, thread_id=conversation.remote_id, run_id=turn.remote_run_id
        )
        await self._record_outcome(turn, thread_id=conversation.remote_id, check=check)

    async def _record_outcome(self, turn: Turn, *, thread_id: str, check: RunCheck) -> None:
        if check.state is RunState.REQUIRES_ACTION and turn.remote_run_id is not None:
            await self._backend.cancel_run(thread_id=thread_id, run_id=turn.remote_run_id)
        if check.detail:
            log.info("turn %s: run ended %s (%s)", turn.id, check.state.value, check.detail)
        if check.usage is not None:  # issue 10 wiring: usage and estimated cost, once per turn
            await self._record_usage(turn, check)
        await self._save(
            turn,
            status="posting",
            outcome=check.state.value,
            answer=check.text or None,
            files_posted=check.produced_files == 0,
        )

    async def _record_usage(self, turn: Turn, check: RunCheck) -> None:
        """issue 10 wiring: store the run's usage; a failure here never costs the answer."""
        assert check.usage is not None
        try:
            cost = await self.admin.record_usage(
                turn_id=turn.id, conversation_id=turn.conversation_id, usage=check.usage
            )
        except Exception as exc:
            log.warning("turn %s: usage not recorded: %r", turn.id, exc)
            return
        metrics.usage(check.usage, cost)

    async def _wait_for_run(self, turn: Turn, *, thread_id: str, run_id: str) -> RunCheck:
        intervals = poll_intervals(
            initial_s=self._settings.poll_initial_s, max_s=self._settings.poll_max_s
        )
        while True:
            try:
                check = await self._backend.check_run(thread_id=thread_id, run_id=run_id)
            except AssistantUnavailable as exc:
                log.warning("turn %s: checking the run failed (%s); still waiting", turn.id, exc)
            except AssistantRejected as exc:
                log.error("turn %s: the run cannot be read: %s", turn.id, exc)
                return RunCheck(RunState.FAILED, detail=str(exc))
            else:
                if check.state.finished:
                    return check
            remaining = turn.deadline_at - time.time()
            if remaining <= 0:
                log.warning("turn %s: no answer within the deadline; cancelling the run", turn.id)
                await self._backend.cancel_run(thread_id=thread_id, run_id=run_id)
                return RunCheck(RunState.EXPIRED, detail="deadline")
            await asyncio.sleep(min(next(intervals), remaining))

    async def _retrying(self, turn: Turn, call: Callable[[bool], Awaitable[T]]) -> T:
        """Retry an unavailable assistant API with backoff until the turn's deadline.

        `call` learns whether it is a retry: a request that failed on our side may still have
        succeeded at OpenAI, so a retried run start looks for that run first.
        """
        delay = 1.0
        retry = False
        while True:
            try:
                return await call(retry)
            except AssistantUnavailable:
                if time.time() + delay >= turn.deadline_at:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                retry = True

    async def _deliver(
        self, turn: Turn, place: Place, conversation: Conversation, *, after_ts: str
    ) -> None:
        """Post what is left of the turn's reply; the last step is stored with "done"."""
        chunks = replies_for(outcome=turn.outcome or "failed", answer=turn.answer, turn_id=turn.id)
        reply_ts = turn.reply_ts
        try:
            for index in range(turn.chunks_posted, len(chunks)):
                reply_ts = await self._post_chunk(
                    turn, place, chunks[index], first=index == 0, after_ts=reply_ts or after_ts
                )
                if index < len(chunks) - 1:
                    await self._save(turn, chunks_posted=index + 1, reply_ts=reply_ts)
            await self._deliver_produced_files(turn, place, conversation)
        except SlackApiError as exc:
            metrics.slack_error(str(exc.response.get("error")))  # issue 10 wiring
            if not is_permanent_slack_error(exc):
                raise
            log.error(
                "turn %s: Slack refused the answer (%s); dropping it",
                turn.id,
                exc.response.get("error"),
            )
        if place.surface == "assistant":
            await self._slack.set_status(place, "")
        await self._save(
            turn,
            status="done",
            chunks_posted=len(chunks),
            reply_ts=reply_ts,
            files_posted=True,
            finished_at=time.time(),
        )
        metrics.answered(turn.id, turn.outcome or "failed")  # issue 10 wiring

    async def _deliver_produced_files(
        self, turn: Turn, place: Place, conversation: Conversation
    ) -> None:
        if turn.files_posted or not turn.remote_run_id or conversation.remote_id is None:
            return
        try:
            images = await self._backend.produced_files(
                thread_id=conversation.remote_id, run_id=turn.remote_run_id
            )
        except (AssistantUnavailable, AssistantRejected) as exc:
            log.warning("turn %s: the assistant's files could not be read: %s", turn.id, exc)
            return
        if images:
            await self._slack.upload_images(place, images)

    async def _post_chunk(
        self, turn: Turn, place: Place, reply: Reply, *, first: bool, after_ts: str
    ) -> str:
        """Post one chunk exactly once: the first replaces the placeholder; on a resumed turn,
        a chunk already in the thread (posted just before a crash) is not posted again."""
        if first and turn.placeholder_ts is not None:
            await self._end_live_message(turn, place)
            try:
                await self._slack.update(
                    place, turn.placeholder_ts, reply.text, blocks=reply.blocks
                )
                return turn.placeholder_ts
            except SlackApiError as exc:
                if exc.response.get("error") not in {"message_not_found", "cant_update_message"}:
                    raise
        if turn.attempts > 1:
            posted = await self._slack.find_bot_message(
                place, after_ts=after_ts, texts={reply.text}
            )
            if posted is not None:
                return posted
        return await self._slack.post(place, reply.text, blocks=reply.blocks)

    async def _end_live_message(self, turn: Turn, place: Place) -> None:
        """A streamed placeholder must stop streaming before the answer can replace it."""
        live = self._live.pop(turn.id, None)
        if live is not None:
            await live.finish()
        elif self._settings.delivery == "stream" and turn.attempts > 1 and turn.placeholder_ts:
            await self._slack.stop_stream(place, turn.placeholder_ts)

    async def _save(self, turn: Turn, **values: Any) -> None:
        await self._store.update_turn(turn.id, **values)
        logs.note_outcome(values.get("outcome"))  # issue 10 wiring: JSON logs name the outcome
        for name, value in values.items():
            setattr(turn, name, value)
