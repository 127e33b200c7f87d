"""The bot's calls to Slack's Web API, each with the token of the workspace it acts in:
who said what, the thread's history, posting, updating and streaming answers, the status."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.assistants.base import ToolContext
from bot.attachments import FilePlan, Image
from bot.installations import TeamAuth, TeamKey
from bot.slack import files, threads
from bot.slack.errors import best_effort, classify
from bot.slack.files import FetchedFiles
from bot.slack.threads import ThreadRead
from bot.text.mentions import name_mentions, unlabelled_mentions, unping_markdown

log = logging.getLogger(__name__)

_NAME_TTL_S = 3600.0


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


def _quietly(what: str) -> AbstractAsyncContextManager[None]:
    """A best-effort call whose failure is expected now and then (the status of a thread
    that moved on, a stream that already ended): logged at DEBUG only."""
    return best_effort(what, level=logging.DEBUG, logger=log)


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
        if classify(exc).token_unusable:
            self.workspaces.forget(team)

    # People ------------------------------------------------------------------------------

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

    # Threads and files -------------------------------------------------------------------

    async def read_thread(
        self, channel_id: str, thread_ts: str, *, before_ts: str, team: TeamKey = _NO_TEAM
    ) -> ThreadRead:
        """The thread's messages older than `before_ts`, as much as Slack's limits allow."""
        auth = await self.auth(team)
        return await threads.read_thread(
            auth.client,
            channel_id,
            thread_ts,
            before_ts=before_ts,
            bot_user_ids={self.bot_user_id, auth.bot_user_id},
        )

    async def find_bot_message(
        self, place: Place, *, after_ts: str, texts: set[str], prefix_of: str | None = None
    ) -> str | None:
        """The ts of the bot's own message in the thread that a process which died right
        after posting it never recorded (see `threads.find_bot_message`)."""
        auth = await self.auth(place.team)
        return await threads.find_bot_message(
            auth.client,
            place.channel_id,
            place.thread_ts,
            bot_user_ids={self.bot_user_id, auth.bot_user_id},
            after_ts=after_ts,
            texts=texts,
            prefix_of=prefix_of,
        )

    async def download_files(
        self, plan: FilePlan, *, deadline_at: float, team: TeamKey = _NO_TEAM
    ) -> FetchedFiles:
        """A turn's planned files, with the workspace's token (see `files.download_files`)."""
        if not plan.images and not plan.texts:
            return FetchedFiles()
        return await files.download_files(await self._client(team), plan, deadline_at=deadline_at)

    async def upload_images(self, place: Place, images: Sequence[Image]) -> None:
        await files.upload_images(
            await self._client(place.team),
            channel_id=place.channel_id,
            thread_ts=place.thread_ts,
            images=images,
        )

    # Messages ----------------------------------------------------------------------------

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
        async with _quietly("chat.delete"):
            await (await self._client(place.team)).chat_delete(channel=place.channel_id, ts=ts)

    async def post_ephemeral(self, place: Place, user_id: str, text: str) -> None:
        """A note only `user_id` sees; one Slack refuses is logged and dropped."""
        async with best_effort("the ephemeral note was not posted", logger=log):
            await (await self._client(place.team)).chat_postEphemeral(
                channel=place.channel_id, thread_ts=place.thread_ts, user=user_id, text=text
            )

    # Streaming ---------------------------------------------------------------------------

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
        async with _quietly("stopStream"):
            await (await self._client(place.team)).chat_stopStream(channel=place.channel_id, ts=ts)

    # The assistant pane ------------------------------------------------------------------

    async def set_status(self, place: Place, status: str) -> None:
        """The assistant pane's "is thinking…" line; an empty status clears it."""
        async with _quietly("assistant.threads.setStatus"):
            await (await self._client(place.team)).assistant_threads_setStatus(
                channel_id=place.channel_id, thread_ts=place.thread_ts, status=status
            )

    async def set_title(self, place: Place, title: str) -> None:
        async with _quietly("assistant.threads.setTitle"):
            await (await self._client(place.team)).assistant_threads_setTitle(
                channel_id=place.channel_id, thread_ts=place.thread_ts, title=title[:255]
            )
