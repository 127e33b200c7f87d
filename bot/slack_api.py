"""The bot's calls to Slack's Web API: who said what, the thread's history, posting answers.

Retries for rate limits (honouring Retry-After), connection errors and 5xx are configured on
the client once, so every call here is retried the way Slack asks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.assistants.base import ToolContext
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
from bot.installations import TeamAuth, TeamKey
from bot.text.mentions import name_mentions, unlabelled_mentions, unping_markdown

log = logging.getLogger(__name__)

ASSISTANT_AUTHOR = "Assistant"
_NAME_TTL_S = 3600.0
_READ_CHUNK = 64 * 1024
_MAX_REDIRECTS = 3
SLACK_TIMEOUT_S = 15
"""How long one Web API call may take, connection and answer included."""


def make_slack_session() -> aiohttp.ClientSession:
    """The HTTP session every Slack client of the process shares. The SDK applies its own
    `timeout` only to sessions it opens itself, so the shared one carries it: without it a
    Slack that accepts the connection but never answers would hold a call for aiohttp's
    default of five minutes."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT_S))


def make_web_client(
    *, token: str, base_url: str, session: aiohttp.ClientSession | None = None
) -> AsyncWebClient:
    """Slack's Web API client with the bot's retry policy.

    Given a `session`, every call reuses its connections; without one the SDK opens (and
    closes) a new HTTP session, so a new connection and TLS handshake, for every call.
    """
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        session=session,
        timeout=SLACK_TIMEOUT_S,
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
class ThreadRead:
    """What could be read of a thread: its messages, oldest first, and whether some are
    missing (Slack rate-limited the reading, or the thread is longer than is read)."""

    messages: list[ThreadMessage]
    incomplete: bool = False


HISTORY_PAGE = 200
"""Messages asked for per conversations.replies request; Slack gives apps outside the
Marketplace at most 15 whatever is asked (and one such request a minute)."""
HISTORY_PAGES = 10


@dataclass
class FetchedFiles:
    """What a turn's files gave: images for the model, text files to quote, and the files
    that could not be read, each as "name (why)" for the note to the user."""

    images: list[Image] = field(default_factory=list)
    texts: list[tuple[str, bytes]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Place:
    """Where a conversation's replies go, and in which workspace (and organisation)."""

    channel_id: str
    thread_ts: str
    surface: str
    team_id: str = ""
    enterprise_id: str | None = None

    @property
    def team(self) -> TeamKey:
        return TeamKey(self.team_id, self.enterprise_id)


class Workspaces(Protocol):
    """Where the gateway gets the token for a workspace."""

    async def auth_for(self, key: TeamKey) -> TeamAuth: ...

    def forget(self, key: TeamKey | None = None) -> None: ...


def search_clients(workspaces: Workspaces) -> Callable[[ToolContext], Awaitable[AsyncWebClient]]:
    """Workspace search's Slack client for a turn: the bot token of the turn's workspace."""

    async def client_for(context: ToolContext) -> AsyncWebClient:
        key = TeamKey(context.team_id, context.enterprise_id)
        return (await workspaces.auth_for(key)).client

    return client_for


class SingleWorkspace:
    """Single-token mode (SLACK_BOT_TOKEN): one client for whichever workspace is asked."""

    def __init__(self, client: AsyncWebClient, *, bot_user_id: str, bot_id: str = "") -> None:
        self._auth = TeamAuth(
            client=client,
            bot_user_id=bot_user_id,
            bot_id=bot_id,
            enterprise_id=None,
            is_enterprise_install=False,
        )

    async def auth_for(self, key: TeamKey) -> TeamAuth:
        return self._auth

    def forget(self, key: TeamKey | None = None) -> None:
        return None


_NO_TEAM = TeamKey("")
_DEAD_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "token_revoked", "account_inactive", "token_expired"}
)


class SlackGateway:
    """The bot's Web API calls. Each picks the token of the workspace it acts in: the one
    token in single-token mode, the workspace's installation in OAuth mode."""

    def __init__(
        self,
        client: AsyncWebClient | None = None,
        *,
        bot_user_id: str = "",
        workspaces: Workspaces | None = None,
    ) -> None:
        if workspaces is None:
            assert client is not None, "a client, or workspaces to find one per team"
            workspaces = SingleWorkspace(client, bot_user_id=bot_user_id)
        self.workspaces = workspaces
        self.bot_user_id = bot_user_id
        self._names: dict[tuple[str, str], tuple[str, float]] = {}

    async def auth(self, team: TeamKey) -> TeamAuth:
        return await self.workspaces.auth_for(team)

    async def _client(self, team: TeamKey) -> AsyncWebClient:
        return (await self.workspaces.auth_for(team)).client

    async def bot_user_for(self, team: TeamKey) -> str:
        """The bot's own user id in the workspace (each workspace has its own bot user)."""
        return (await self.workspaces.auth_for(team)).bot_user_id or self.bot_user_id

    def token_failed(self, team: TeamKey, exc: SlackApiError) -> None:
        """A refused token is not used again from the cache: the next call reads the store."""
        if str(exc.response.get("error", "")) in _DEAD_TOKEN_ERRORS:
            self.workspaces.forget(team)

    async def display_names(
        self, user_ids: Iterable[str], *, team: TeamKey = _NO_TEAM
    ) -> dict[str, str]:
        """Display names for user ids, cached for an hour; the id itself when unknown."""
        auth = await self.auth(team)
        wanted = set(user_ids) - {self.bot_user_id, auth.bot_user_id}
        return {user_id: await self._display_name(auth.client, team, user_id) for user_id in wanted}

    async def _display_name(self, client: AsyncWebClient, team: TeamKey, user_id: str) -> str:
        cached = self._names.get((team.team_id, user_id))
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            response = await client.users_info(user=user_id)
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
        self._names[(team.team_id, user_id)] = (str(name), time.monotonic() + _NAME_TTL_S)
        return str(name)

    async def named_mentions(self, team: TeamKey, markdown: str) -> str:
        """The model's Markdown with each `<@U…>` it wrote labelled with that person's name,
        so that, made plain (`unping_markdown`), it reads "@Alan" and notifies nobody."""
        wanted = unlabelled_mentions(markdown)
        if not wanted:
            return markdown
        return name_mentions(markdown, await self.display_names(wanted, team=team))

    async def _plain_markdown(self, team: TeamKey, markdown: str) -> str:
        return unping_markdown(await self.named_mentions(team, markdown))

    async def read_thread(
        self, channel_id: str, thread_ts: str, *, before_ts: str, team: TeamKey = _NO_TEAM
    ) -> ThreadRead:
        """The thread's messages older than `before_ts`, read with care for Slack's limits on
        apps outside the Marketplace (one request a minute, 15 messages each): pages of 15,
        at most HISTORY_PAGES of them, and a rate limit ends the reading at once (no waiting
        a minute inside a turn) with what was read so far, marked incomplete."""
        auth = await self.auth(team)
        client = _without_rate_limit_retries(auth.client)
        messages: list[ThreadMessage] = []
        cursor: str | None = None
        incomplete = False
        for _ in range(HISTORY_PAGES):
            try:
                response = await client.conversations_replies(
                    channel=channel_id,
                    ts=thread_ts,
                    latest=before_ts,
                    inclusive=False,
                    limit=HISTORY_PAGE,
                    cursor=cursor,
                )
            except SlackApiError as exc:
                if exc.response.status_code != 429 and exc.response.get("error") != "ratelimited":
                    raise
                log.info("conversations.replies is rate-limited; the thread is read in part")
                incomplete = True
                break
            for raw in response.get("messages") or []:
                message = self._history_message(raw, auth.bot_user_id)
                if message is not None and float(message.ts) < float(before_ts):
                    messages.append(message)
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        else:
            incomplete = True
        unique = {message.ts: message for message in messages}
        return ThreadRead(sorted(unique.values(), key=lambda m: float(m.ts)), incomplete)

    async def find_bot_message(
        self, place: Place, *, after_ts: str, texts: set[str], prefix_of: str | None = None
    ) -> str | None:
        """The ts of the bot's own message in the thread, newer than `after_ts`, whose text is
        one of `texts` (or a non-empty beginning of `prefix_of`: a stream that had shown its
        first words): what a process that died right after posting it never recorded."""
        auth = await self.auth(place.team)
        response = await auth.client.conversations_replies(
            channel=place.channel_id, ts=place.thread_ts, oldest=after_ts, limit=50
        )
        for raw in response.get("messages") or []:
            mine = raw.get("user") in {self.bot_user_id, auth.bot_user_id} or bool(
                raw.get("bot_id")
            )
            newer = float(raw.get("ts", 0)) > float(after_ts)
            text = str(raw.get("text") or "")
            begins = bool(prefix_of and text.strip() and prefix_of.startswith(text))
            if mine and newer and (text in texts or begins):
                return str(raw["ts"])
        return None

    def _history_message(self, raw: dict[str, Any], bot_user_id: str) -> ThreadMessage | None:
        text = str(raw.get("text") or "")
        if not text.strip():
            return None
        from_bot = raw.get("user") in {self.bot_user_id, bot_user_id} or bool(raw.get("bot_id"))
        author = str(raw.get("user") or raw.get("username") or raw.get("bot_id") or "unknown")
        return ThreadMessage(ts=str(raw["ts"]), author_id=author, text=text, from_bot=from_bot)

    async def download_files(
        self, plan: FilePlan, *, deadline_at: float, team: TeamKey = _NO_TEAM
    ) -> FetchedFiles:
        """Download a turn's planned files, one at a time, within the turn's deadline and a
        budget of MAX_TURN_FILE_BYTES for all of them; what cannot be read is named."""
        fetched = FetchedFiles()
        if not plan.images and not plan.texts:
            return fetched
        budget = MAX_TURN_FILE_BYTES
        client = await self._client(team)
        async with aiohttp.ClientSession() as http:
            for file in [*plan.images, *plan.texts]:
                limit = file_limit(file)
                try:
                    data = await self._download_within(
                        http,
                        file,
                        limit=limit,
                        budget=budget,
                        deadline_at=deadline_at,
                        client=client,
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
        client: AsyncWebClient,
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
                client=client,
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
        client: AsyncWebClient | None = None,
    ) -> bytes:
        """A file's bytes from `url_private`, whole, with the bot token as Slack requires.

        The token goes only to Slack's own file hosts (see `may_send_token`); a URL elsewhere
        is refused before any request. A body over `max_bytes` is refused, never cut short.
        Without access Slack answers 200 with its sign-in page, so HTML counts as a failure.
        """
        client = client or await self._client(_NO_TEAM)
        slack_api_url = str(client.base_url)
        if not may_send_token(url, slack_api_url=slack_api_url):
            raise FileUnavailable(DownloadProblem.FOREIGN_HOST)
        token = str(client.token)
        try:
            async with asyncio.timeout(timeout_s):
                if http is None:
                    async with aiohttp.ClientSession() as session:
                        return await self._fetch(session, url, max_bytes, slack_api_url, token)
                return await self._fetch(http, url, max_bytes, slack_api_url, token)
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
        token: str,
    ) -> bytes:
        """Follows redirects itself, so that the token never travels with a redirect to a
        host that may not have it (the hop is then made without the token)."""
        for _ in range(_MAX_REDIRECTS + 1):
            headers = {}
            if may_send_token(url, slack_api_url=slack_api_url):
                headers["Authorization"] = f"Bearer {token}"
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
        response = await (await self._client(place.team)).chat_postMessage(
            channel=place.channel_id, thread_ts=place.thread_ts, text=text, blocks=blocks
        )
        return str(response["ts"])

    async def update(
        self, place: Place, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        await (await self._client(place.team)).chat_update(
            channel=place.channel_id, ts=ts, text=text, blocks=blocks or []
        )

    async def delete(self, place: Place, ts: str) -> None:
        """Remove one of the bot's own messages; one already gone is left as it is."""
        try:
            await (await self._client(place.team)).chat_delete(channel=place.channel_id, ts=ts)
        except SlackApiError as exc:
            log.debug("chat.delete: %s", exc.response.get("error"))

    async def upload_images(self, place: Place, images: Sequence[Image]) -> None:
        await (await self._client(place.team)).files_upload_v2(
            channel=place.channel_id,
            thread_ts=place.thread_ts,
            file_uploads=[
                {"content": image.data, "filename": image.name, "title": image.name}
                for image in images
            ],
        )

    async def post_ephemeral(self, place: Place, user_id: str, text: str) -> None:
        await (await self._client(place.team)).chat_postEphemeral(
            channel=place.channel_id, thread_ts=place.thread_ts, user=user_id, text=text
        )

    async def start_stream(
        self, place: Place, *, team_id: str, user_id: str, markdown: str = ""
    ) -> str:
        """Start a streamed message, with its first words when they are known."""
        response = await (await self._client(place.team)).chat_startStream(
            channel=place.channel_id,
            thread_ts=place.thread_ts,
            recipient_team_id=team_id,
            recipient_user_id=user_id,
            markdown_text=await self._plain_markdown(place.team, markdown) if markdown else None,
            task_display_mode="timeline",
        )
        return str(response["ts"])

    async def append_chunks(self, place: Place, ts: str, chunks: list[dict[str, Any]]) -> None:
        """Non-text streaming chunks (task updates)."""
        await (await self._client(place.team)).chat_appendStream(
            channel=place.channel_id, ts=ts, chunks=chunks
        )

    async def append_stream(self, place: Place, ts: str, markdown: str) -> None:
        """Stream the model's Markdown as it comes; its mentions are made plain text first."""
        await (await self._client(place.team)).chat_appendStream(
            channel=place.channel_id,
            ts=ts,
            markdown_text=await self._plain_markdown(place.team, markdown),
        )

    async def finish_stream(
        self, place: Place, ts: str, *, markdown: str, blocks: list[dict[str, Any]] | None
    ) -> None:
        """End a streamed message with its last words and the blocks shown under it."""
        await (await self._client(place.team)).chat_stopStream(
            channel=place.channel_id,
            ts=ts,
            blocks=blocks or None,
            markdown_text=await self._plain_markdown(place.team, markdown) if markdown else None,
        )

    async def stop_stream(self, place: Place, ts: str) -> None:
        """End a streamed message; one that already ended (or never streamed) is left as it is."""
        try:
            await (await self._client(place.team)).chat_stopStream(channel=place.channel_id, ts=ts)
        except SlackApiError as exc:
            log.debug("stopStream: %s", exc.response.get("error"))

    async def set_status(self, place: Place, status: str) -> None:
        """The assistant pane's "is thinking…" line; an empty status clears it."""
        try:
            await (await self._client(place.team)).assistant_threads_setStatus(
                channel_id=place.channel_id, thread_ts=place.thread_ts, status=status
            )
        except SlackApiError:
            return

    async def set_title(self, place: Place, title: str) -> None:
        try:
            await (await self._client(place.team)).assistant_threads_setTitle(
                channel_id=place.channel_id, thread_ts=place.thread_ts, title=title[:255]
            )
        except SlackApiError:
            return


def _without_rate_limit_retries(client: AsyncWebClient) -> AsyncWebClient:
    """The same token and address, retrying connection errors and 5xx but not a 429: a
    rate-limited read gives up instead of waiting out Slack's minute."""
    return AsyncWebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=3),
            AsyncServerErrorRetryHandler(max_retry_count=3),
        ],
    )


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
