"""An answer shown while the model writes it.

Slack's message streaming is used where the workspace allows it: the stream starts with the
model's first words (`chat.startStream`), more arrive in batches (`chat.appendStream`), and
the last words and the feedback buttons end it (`chat.stopStream`). Slack renders the
Markdown itself, so what the user watched is what stays: two or three calls for a short
answer, and no re-rendering at the end. Where streaming is not allowed, a placeholder is
edited with `chat.update`, throttled to that method's rate limit, and the fully formatted
answer replaces it at the end.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError

from bot.assistants.base import ToolProgress
from bot.slack.errors import best_effort, error_code
from bot.slack.gateway import Place, SlackGateway
from bot.text.markdown import markdown_to_mrkdwn
from bot.text.mentions import split_unfinished

log = logging.getLogger(__name__)

THINKING_TEXT = "_Thinking…_"
"""What a live message or placeholder shows before the answer's first words."""

STREAM_FLUSH_S = 0.75
MAX_STREAMED_CHARS = 12_000
"""Longer answers are finished as separate messages (`chat.update` plus posts)."""
UPDATE_FLUSH_S = 1.0


class LiveMessage(Protocol):
    ts: str

    async def append(self, text: str) -> None: ...

    async def task(self, progress: ToolProgress) -> None:
        """Show a tool call's progress (where the message can)."""
        ...

    async def finish(self) -> None: ...

    async def interrupt(self, note: str) -> None:
        """End the message where it is, with `note` after the words so far."""
        ...

    async def complete(self, answer: str, *, blocks: list[dict[str, Any]]) -> bool:
        """End the live message as the finished answer, if it can be; False otherwise (the
        caller then replaces it with the formatted answer)."""
        ...


class _Throttle:
    """Buffers text and says when to send it: the first piece at once, then every `every_s`."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.pending = ""
        self.sent_any = False
        self._last = 0.0

    def add(self, text: str) -> bool:
        self.pending += text
        return not self.sent_any or time.monotonic() - self._last >= self.every_s

    def take(self) -> str:
        text, self.pending = self.pending, ""
        self.sent_any = True
        self.mark()
        return text

    def take_finished(self) -> str:
        """What may be sent now; a tail that the next words could make a mention stays."""
        ready, self.pending = split_unfinished(self.pending)
        self.sent_any = True
        self.mark()
        return ready

    def mark(self) -> None:
        self._last = time.monotonic()


class SlackStream:
    def __init__(
        self, slack: SlackGateway, place: Place, ts: str, *, sent: str = "", held: str = ""
    ) -> None:
        self._slack = slack
        self._place = place
        self.ts = ts
        self._throttle = _Throttle(STREAM_FLUSH_S)
        self._throttle.sent_any = bool(sent)
        self._throttle.pending = held
        self._throttle.mark()
        self._sent = sent
        self._broken = False

    async def complete(self, answer: str, *, blocks: list[dict[str, Any]]) -> bool:
        """The rest of the answer (what was not streamed yet, its sources) and the blocks,
        in the call that ends the stream."""
        if self._broken or len(answer) > MAX_STREAMED_CHARS or not answer.startswith(self._sent):
            return False
        try:
            await self._slack.finish_stream(
                self._place, self.ts, markdown=answer[len(self._sent) :], blocks=blocks
            )
        except SlackApiError as exc:
            log.warning("finishing the stream failed: %s", error_code(exc))
            self._broken = True
            return False
        self._throttle.take()
        return True

    async def append(self, text: str) -> None:
        if self._throttle.add(text) and not self._broken:
            await self._send(self._throttle.take_finished())

    async def task(self, progress: ToolProgress) -> None:
        """A task update, after the text so far (so the timeline keeps the order)."""
        if self._broken:
            return
        if self._throttle.pending:
            await self._send(self._throttle.take_finished())
        async with best_effort("task update refused", logger=log):
            await self._slack.append_chunks(self._place, self.ts, [task_update_chunk(progress)])

    async def finish(self) -> None:
        if self._throttle.pending and not self._broken:
            await self._send(self._throttle.take())
        await self._slack.stop_stream(self._place, self.ts)

    async def interrupt(self, note: str) -> None:
        rest = "" if self._broken else self._throttle.take()
        await self._slack.finish_stream(
            self._place, self.ts, markdown=f"{rest}\n\n{note}", blocks=None
        )

    async def _send(self, text: str) -> None:
        if not text:
            return
        try:
            await self._slack.append_stream(self._place, self.ts, text)
            self._sent += text
        except SlackApiError as exc:
            log.warning("streaming into Slack stopped: %s", error_code(exc))
            self._broken = True


class UpdatedMessage:
    """The fallback: the placeholder edited with the text so far, at most once a second."""

    def __init__(self, slack: SlackGateway, place: Place, ts: str, *, text: str = "") -> None:
        self._slack = slack
        self._place = place
        self.ts = ts
        self._throttle = _Throttle(UPDATE_FLUSH_S)
        self._throttle.sent_any = bool(text)
        self._throttle.mark()
        self._text = text

    async def complete(self, answer: str, *, blocks: list[dict[str, Any]]) -> bool:
        return False

    async def append(self, text: str) -> None:
        if self._throttle.add(text):
            await self._send()

    async def task(self, progress: ToolProgress) -> None:
        return  # an edited message has no tasks; the status line names the tool instead

    async def finish(self) -> None:
        if self._throttle.pending:
            await self._send()

    async def interrupt(self, note: str) -> None:
        self._text += self._throttle.take()
        await self._slack.update(
            self._place, self.ts, markdown_to_mrkdwn(self._text) + f"\n\n{note}"
        )

    async def _send(self) -> None:
        self._text += self._throttle.take()
        async with best_effort("live update failed", logger=log):
            named = await self._slack.named_mentions(self._place.team, self._text)
            await self._slack.update(self._place, self.ts, markdown_to_mrkdwn(named) + " …")


async def open_live_message(
    slack: SlackGateway, place: Place, *, first_words: str, team_id: str, user_id: str
) -> LiveMessage:
    """A live message that starts with the model's first words (or, when a tool runs before
    any words, empty, to show the tool's progress)."""
    ready, held = split_unfinished(first_words)
    try:
        ts = await slack.start_stream(place, team_id=team_id, user_id=user_id, markdown=ready)
        return SlackStream(slack, place, ts, sent=ready, held=held)
    except SlackApiError as exc:
        log.info("Slack streaming unavailable (%s); editing a placeholder instead", error_code(exc))
    preview = markdown_to_mrkdwn(first_words) + " …" if first_words else THINKING_TEXT
    ts = await slack.post(place, preview)
    return UpdatedMessage(slack, place, ts, text=first_words)


def task_update_chunk(progress: ToolProgress) -> dict[str, Any]:
    """Slack's `task_update` streaming chunk for a tool call."""
    chunk: dict[str, Any] = {
        "type": "task_update",
        "id": progress.id[:64],
        "title": progress.title[:256],
        "status": progress.status.value,
    }
    if progress.sources:
        chunk["sources"] = [
            {"type": "url", "url": source.url, "text": source.title[:256]}
            for source in progress.sources
        ]
    return chunk
