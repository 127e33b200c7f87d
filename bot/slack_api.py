"""The bot's calls to Slack's Web API: who said what, the thread's history, posting answers.

Retries for rate limits (honouring Retry-After), connection errors and 5xx are configured on
the client once, so every call here is retried the way Slack asks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.attachments import Image

log = logging.getLogger(__name__)

ASSISTANT_AUTHOR = "Assistant"
_NAME_TTL_S = 3600.0


def make_web_client(*, token: str, base_url: str) -> AsyncWebClient:
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=15,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=3),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=3),
        ],
    )


@dataclass(frozen=True)
class ThreadMessage:
    """A message of the Slack thread as history for the assistant."""

    ts: str
    author_id: str
    text: str
    from_bot: bool


@dataclass(frozen=True)
class Place:
    """Where a conversation's replies go."""

    channel_id: str
    thread_ts: str
    surface: str


class SlackGateway:
    def __init__(self, client: AsyncWebClient, *, bot_user_id: str) -> None:
        self.client = client
        self.bot_user_id = bot_user_id
        self._names: dict[str, tuple[str, float]] = {}

    async def display_names(self, user_ids: Iterable[str]) -> dict[str, str]:
        """Display names for user ids, cached for an hour; the id itself when unknown."""
        wanted = set(user_ids) - {self.bot_user_id}
        return {user_id: await self._display_name(user_id) for user_id in wanted}

    async def _display_name(self, user_id: str) -> str:
        cached = self._names.get(user_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            response = await self.client.users_info(user=user_id)
        except SlackApiError:
            return user_id
        user: dict[str, Any] = response.get("user") or {}
        profile: dict[str, Any] = user.get("profile") or {}
        name = (
            profile.get("display_name")
            or profile.get("real_name")
            or user.get("real_name")
            or user.get("name")
            or user_id
        )
        self._names[user_id] = (str(name), time.monotonic() + _NAME_TTL_S)
        return str(name)

    async def thread_history(
        self, channel_id: str, thread_ts: str, *, before_ts: str
    ) -> list[ThreadMessage]:
        """The thread's messages older than `before_ts`, oldest first (parent included)."""
        messages: list[ThreadMessage] = []
        cursor: str | None = None
        while True:
            response = await self.client.conversations_replies(
                channel=channel_id, ts=thread_ts, limit=200, cursor=cursor
            )
            for raw in response.get("messages") or []:
                message = self._history_message(raw)
                if message is not None and float(message.ts) < float(before_ts):
                    messages.append(message)
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return sorted(messages, key=lambda message: float(message.ts))

    async def find_bot_message(self, place: Place, *, after_ts: str, texts: set[str]) -> str | None:
        """The ts of the bot's own message in the thread, newer than `after_ts`, whose text is
        one of `texts`: what a process that died right after posting it never recorded."""
        response = await self.client.conversations_replies(
            channel=place.channel_id, ts=place.thread_ts, oldest=after_ts, limit=50
        )
        for raw in response.get("messages") or []:
            mine = raw.get("user") == self.bot_user_id or bool(raw.get("bot_id"))
            newer = float(raw.get("ts", 0)) > float(after_ts)
            if mine and newer and str(raw.get("text") or "") in texts:
                return str(raw["ts"])
        return None

    def _history_message(self, raw: dict[str, Any]) -> ThreadMessage | None:
        text = str(raw.get("text") or "")
        if not text.strip():
            return None
        from_bot = raw.get("user") == self.bot_user_id or bool(raw.get("bot_id"))
        author = str(raw.get("user") or raw.get("username") or raw.get("bot_id") or "unknown")
        return ThreadMessage(ts=str(raw["ts"]), author_id=author, text=text, from_bot=from_bot)

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """A file's bytes from `url_private`, with the bot token as Slack requires.

        Without access Slack answers 200 with its sign-in page, so HTML counts as a failure.
        """
        headers = {"Authorization": f"Bearer {self.client.token}"}
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
            if response.status != 200 or response.content_type == "text/html":
                raise FileUnavailable(f"HTTP {response.status} {response.content_type}")
            data = await response.content.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise FileUnavailable("too large")
        return data

    async def post(
        self, place: Place, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> str:
        response = await self.client.chat_postMessage(
            channel=place.channel_id, thread_ts=place.thread_ts, text=text, blocks=blocks
        )
        return str(response["ts"])

    async def update(
        self, place: Place, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        await self.client.chat_update(
            channel=place.channel_id, ts=ts, text=text, blocks=blocks or []
        )

    async def upload_images(self, place: Place, images: Sequence[Image]) -> None:
        await self.client.files_upload_v2(
            channel=place.channel_id,
            thread_ts=place.thread_ts,
            file_uploads=[
                {"content": image.data, "filename": image.name, "title": image.name}
                for image in images
            ],
        )

    async def post_ephemeral(self, place: Place, user_id: str, text: str) -> None:
        await self.client.chat_postEphemeral(
            channel=place.channel_id, thread_ts=place.thread_ts, user=user_id, text=text
        )

    async def start_stream(self, place: Place, *, team_id: str, user_id: str) -> str:
        response = await self.client.chat_startStream(
            channel=place.channel_id,
            thread_ts=place.thread_ts,
            recipient_team_id=team_id,
            recipient_user_id=user_id,
        )
        return str(response["ts"])

    async def append_stream(self, place: Place, ts: str, markdown: str) -> None:
        await self.client.chat_appendStream(channel=place.channel_id, ts=ts, markdown_text=markdown)

    async def stop_stream(self, place: Place, ts: str) -> None:
        """End a streamed message; one that already ended (or never streamed) is left as it is."""
        try:
            await self.client.chat_stopStream(channel=place.channel_id, ts=ts)
        except SlackApiError as exc:
            log.debug("stopStream: %s", exc.response.get("error"))

    async def set_status(self, place: Place, status: str) -> None:
        """The assistant pane's "is thinking…" line; an empty status clears it."""
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=place.channel_id, thread_ts=place.thread_ts, status=status
            )
        except SlackApiError:
            return

    async def set_title(self, place: Place, title: str) -> None:
        try:
            await self.client.assistant_threads_setTitle(
                channel_id=place.channel_id, thread_ts=place.thread_ts, title=title[:255]
            )
        except SlackApiError:
            return


class FileUnavailable(Exception):
    """A shared file could not be downloaded (no access, gone, or larger than allowed)."""


def is_permanent_slack_error(exc: BaseException) -> bool:
    """Errors after which posting again cannot succeed (the channel is gone, the bot is out)."""
    if not isinstance(exc, SlackApiError):
        return False
    error = str(exc.response.get("error", ""))
    return error in {
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "restricted_action",
        "cant_update_message",
        "message_not_found",
        "account_inactive",
        "invalid_auth",
        "token_revoked",
    }
