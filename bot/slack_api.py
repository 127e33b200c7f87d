"""The bot's calls to Slack's Web API: who said what, the thread's history, posting answers.

Retries for rate limits (honouring Retry-After), connection errors and 5xx are configured on
the client once, so every call here is retried the way Slack asks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.attachments import (
    DOWNLOAD_TIMEOUT_S,
    MAX_TURN_FILE_BYTES,
    DownloadProblem,
    FilePlan,
    Image,
    SlackFile,
    file_limit,
    may_send_token,
    problem_note,
    url_host,
)
from bot.text import unping_markdown

log = logging.getLogger(__name__)

ASSISTANT_AUTHOR = "Assistant"
_NAME_TTL_S = 3600.0
_READ_CHUNK = 64 * 1024
_MAX_REDIRECTS = 3


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


@dataclass
class FetchedFiles:
    """What a turn's files gave: images for the model, text files to quote, and the files
    that could not be read, each as "name (why)" for the note to the user."""

    images: list[Image] = field(default_factory=list)
    texts: list[tuple[str, bytes]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


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

    async def download_files(self, plan: FilePlan, *, deadline_at: float) -> FetchedFiles:
        """Download a turn's planned files, one at a time, within the turn's deadline and a
        budget of MAX_TURN_FILE_BYTES for all of them; what cannot be read is named."""
        fetched = FetchedFiles()
        if not plan.images and not plan.texts:
            return fetched
        budget = MAX_TURN_FILE_BYTES
        async with aiohttp.ClientSession() as http:
            for file in [*plan.images, *plan.texts]:
                limit = file_limit(file)
                try:
                    data = await self._download_within(
                        http, file, limit=limit, budget=budget, deadline_at=deadline_at
                    )
                except FileUnavailable as exc:
                    log.warning("a file could not be downloaded: %s", exc.problem.value)
                    note = problem_note(exc.problem, limit=limit, host=url_host(file.url))
                    fetched.refused.append(f"{file.name} ({note})")
                    continue
                budget -= len(data)
                if file in plan.images:
                    fetched.images.append(Image(file.name, file.mimetype, data))
                else:
                    fetched.texts.append((file.name, data))
        return fetched

    async def _download_within(
        self,
        http: aiohttp.ClientSession,
        file: SlackFile,
        *,
        limit: int,
        budget: int,
        deadline_at: float,
    ) -> bytes:
        if file.size > budget:
            raise FileUnavailable(DownloadProblem.OVER_TURN_BUDGET)
        remaining_s = deadline_at - time.time()
        if remaining_s <= 0:
            raise FileUnavailable(DownloadProblem.TIMED_OUT)
        try:
            return await self.download(
                file.url,
                max_bytes=min(limit, budget),
                timeout_s=min(DOWNLOAD_TIMEOUT_S, remaining_s),
                http=http,
            )
        except FileUnavailable as exc:
            if exc.problem is DownloadProblem.TOO_LARGE and budget < limit:
                raise FileUnavailable(DownloadProblem.OVER_TURN_BUDGET) from exc
            raise

    async def download(
        self,
        url: str,
        *,
        max_bytes: int,
        timeout_s: float = DOWNLOAD_TIMEOUT_S,
        http: aiohttp.ClientSession | None = None,
    ) -> bytes:
        """A file's bytes from `url_private`, whole, with the bot token as Slack requires.

        The token goes only to Slack's own file hosts (see `may_send_token`); a URL elsewhere
        is refused before any request. A body over `max_bytes` is refused, never cut short.
        Without access Slack answers 200 with its sign-in page, so HTML counts as a failure.
        """
        slack_api_url = str(self.client.base_url)
        if not may_send_token(url, slack_api_url=slack_api_url):
            raise FileUnavailable(DownloadProblem.FOREIGN_HOST)
        try:
            async with asyncio.timeout(timeout_s):
                if http is None:
                    async with aiohttp.ClientSession() as session:
                        return await self._fetch(session, url, max_bytes, slack_api_url)
                return await self._fetch(http, url, max_bytes, slack_api_url)
        except TimeoutError as exc:
            raise FileUnavailable(DownloadProblem.TIMED_OUT) from exc
        except aiohttp.ClientError as exc:
            log.warning("file download failed: %s", type(exc).__name__)
            raise FileUnavailable(DownloadProblem.FAILED) from exc

    async def _fetch(
        self,
        http: aiohttp.ClientSession,
        url: str,
        max_bytes: int,
        slack_api_url: str,
    ) -> bytes:
        """Follows redirects itself, so that the token never travels with a redirect to a
        host that may not have it (the hop is then made without the token)."""
        for _ in range(_MAX_REDIRECTS + 1):
            headers = {}
            if may_send_token(url, slack_api_url=slack_api_url):
                headers["Authorization"] = f"Bearer {self.client.token}"
            async with http.get(url, headers=headers, allow_redirects=False) as response:
                location = response.headers.get("Location")
                if response.status in {301, 302, 303, 307, 308} and location:
                    url = urljoin(url, location)
                    continue
                if response.status != 200 or response.content_type == "text/html":
                    raise FileUnavailable(DownloadProblem.NO_ACCESS)
                return await read_whole_body(response, max_bytes=max_bytes)
        raise FileUnavailable(DownloadProblem.FAILED)

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
            task_display_mode="timeline",
        )
        return str(response["ts"])

    async def append_chunks(self, place: Place, ts: str, chunks: list[dict[str, Any]]) -> None:
        """Non-text streaming chunks (task updates)."""
        await self.client.chat_appendStream(channel=place.channel_id, ts=ts, chunks=chunks)

    async def append_stream(self, place: Place, ts: str, markdown: str) -> None:
        """Stream the model's Markdown as it comes; its mentions are made plain text first."""
        await self.client.chat_appendStream(
            channel=place.channel_id, ts=ts, markdown_text=unping_markdown(markdown)
        )

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

    def __init__(self, problem: DownloadProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


async def read_whole_body(response: aiohttp.ClientResponse, *, max_bytes: int) -> bytes:
    """The whole body, however it arrives (`content.read(n)` returns only what is buffered);
    more than `max_bytes`, announced or received, is refused rather than cut short."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise FileUnavailable(DownloadProblem.TOO_LARGE)
    data = bytearray()
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        data += chunk
        if len(data) > max_bytes:
            raise FileUnavailable(DownloadProblem.TOO_LARGE)
    return bytes(data)


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
