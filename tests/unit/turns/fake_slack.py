"""An in-memory Slack for the turn engine: what `bot/turns/` (delivery, the live message,
the prompt) and the approval click call on `bot.slack.gateway.SlackGateway`, and no more.

It keeps the threads' messages as a person would see them (text, blocks, still streaming
or not) and the assistant pane's status, so tests assert what the user sees. A process
dying at an exact point is `die_after("post")`: the call takes effect, then `ProcessDied`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from bot.attachments import FilePlan, Image
from bot.installations import TeamKey
from bot.slack.files import FetchedFiles
from bot.slack.gateway import Place, SlackGateway
from bot.slack.threads import ThreadRead
from tests.unit.turns.crash import ProcessDied

BOT_USER = "UBOT"
ANY_TEAM = TeamKey("")


@dataclass
class Message:
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    streaming: bool = False
    deleted: bool = False
    shown_while_streaming: list[str] = field(default_factory=list)
    """The text as it stood after each streamed piece (what the user watched grow)."""


class FakeSlack:
    """The threads the bot writes to, keyed by (channel, thread ts)."""

    def __init__(self) -> None:
        self.threads: dict[tuple[str, str], list[Message]] = {}
        self.status: dict[tuple[str, str], str] = {}
        self.calls: list[str] = []
        self._ts = itertools.count(1)
        self._die_after: str | None = None
        self._die_in = 0

    def gateway(self) -> SlackGateway:
        """This fake where the bot expects the gateway (the same calls, by name)."""
        return cast(SlackGateway, self)

    def die_after(self, call: str, *, nth: int = 1) -> None:
        """The `nth` `call` from now (a gateway method's name) takes effect, then the
        process dies."""
        self._die_after, self._die_in = call, nth

    # What the user sees -----------------------------------------------------------------

    def bot_messages(self, channel: str, thread_ts: str) -> list[Message]:
        return [m for m in self.threads.get((channel, thread_ts), []) if not m.deleted]

    def texts(self, channel: str, thread_ts: str) -> list[str]:
        return [m.text for m in self.bot_messages(channel, thread_ts)]

    # The gateway's calls ----------------------------------------------------------------

    async def post(
        self, place: Place, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> str:
        message = self._add(place, text, blocks or [])
        self._called("post")
        return message.ts

    async def update(
        self, place: Place, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        message = self._find(place, ts)
        message.text, message.blocks = text, list(blocks or [])
        self._called("update")

    async def delete(self, place: Place, ts: str) -> None:
        self._find(place, ts).deleted = True
        self._called("delete")

    async def post_ephemeral(self, place: Place, user_id: str, text: str) -> None:
        self._called("post_ephemeral")

    async def find_bot_message(
        self, place: Place, *, after_ts: str, texts: set[str], prefix_of: str | None = None
    ) -> str | None:
        for message in self.bot_messages(place.channel_id, place.thread_ts):
            text = message.text
            begins = bool(prefix_of and text.strip() and prefix_of.startswith(text))
            if float(message.ts) > float(after_ts) and (text in texts or begins):
                return message.ts
        return None

    async def start_stream(
        self, place: Place, *, team_id: str, user_id: str, markdown: str = ""
    ) -> str:
        message = self._add(place, markdown, [], streaming=True)
        message.shown_while_streaming.append(markdown)
        self._called("start_stream")
        return message.ts

    async def append_stream(self, place: Place, ts: str, markdown: str) -> None:
        message = self._streaming(place, ts)
        message.text += markdown
        message.shown_while_streaming.append(message.text)
        self._called("append_stream")

    async def append_chunks(self, place: Place, ts: str, chunks: list[dict[str, Any]]) -> None:
        self._streaming(place, ts).blocks.extend(chunks)
        self._called("append_chunks")

    async def finish_stream(
        self, place: Place, ts: str, *, markdown: str, blocks: list[dict[str, Any]] | None
    ) -> None:
        message = self._streaming(place, ts)
        message.text += markdown
        message.blocks.extend(blocks or [])
        message.streaming = False
        self._called("finish_stream")

    async def stop_stream(self, place: Place, ts: str) -> None:
        message = self._find(place, ts)
        message.streaming = False
        self._called("stop_stream")

    async def set_status(self, place: Place, status: str) -> None:
        self.status[(place.channel_id, place.thread_ts)] = status

    async def set_title(self, place: Place, title: str) -> None:
        return None

    async def named_mentions(self, team: TeamKey, markdown: str) -> str:
        return markdown

    async def display_names(
        self, user_ids: Iterable[str], *, team: TeamKey = ANY_TEAM
    ) -> dict[str, str]:
        return {user_id: user_id for user_id in user_ids}

    async def bot_user_for(self, team: TeamKey) -> str:
        return BOT_USER

    async def read_thread(
        self, channel_id: str, thread_ts: str, *, before_ts: str, team: TeamKey = ANY_TEAM
    ) -> ThreadRead:
        return ThreadRead([])

    async def download_files(
        self, plan: FilePlan, *, deadline_at: float, team: TeamKey = ANY_TEAM
    ) -> FetchedFiles:
        return FetchedFiles()

    async def upload_images(self, place: Place, images: Sequence[Image]) -> None:
        self._called("upload_images")

    def token_failed(self, team: TeamKey, exc: Exception) -> None:
        return None

    # ------------------------------------------------------------------------------------

    def _add(
        self, place: Place, text: str, blocks: list[dict[str, Any]], *, streaming: bool = False
    ) -> Message:
        message = Message(f"{2000 + next(self._ts)}.000100", text, blocks, streaming=streaming)
        self.threads.setdefault((place.channel_id, place.thread_ts), []).append(message)
        return message

    def _find(self, place: Place, ts: str) -> Message:
        for message in self.bot_messages(place.channel_id, place.thread_ts):
            if message.ts == ts:
                return message
        raise AssertionError(f"no message {ts} in the thread")

    def _streaming(self, place: Place, ts: str) -> Message:
        message = self._find(place, ts)
        assert message.streaming, f"message {ts} no longer streams"
        return message

    def _called(self, call: str) -> None:
        self.calls.append(call)
        if self._die_after == call:
            self._die_in -= 1
            if self._die_in == 0:
                self._die_after = None
                raise ProcessDied(call)
