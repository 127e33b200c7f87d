"""An in-process fake of the Slack Web API and Socket Mode, for tests and demos.

`FakeSlack` is a real aiohttp server bound to 127.0.0.1 on a random port.  Point the real
``slack_sdk`` ``AsyncWebClient`` at it with ``base_url=fake.api_url`` and it behaves like
Slack where a bot can tell the difference:

* request bodies may be form-encoded, JSON, or query-string parameters (slack_sdk uses all
  three, depending on the method), and the token may come from an ``Authorization: Bearer``
  header or a ``token`` field;
* responses are ``{"ok": true, ...}`` / ``{"ok": false, "error": "..."}`` with HTTP 200,
  except for injected failures (HTTP 429 + ``Retry-After``, 5xx);
* the usual error codes: ``invalid_auth``, ``not_authed``, ``channel_not_found``,
  ``message_not_found``, ``msg_too_long``, ``already_reacted``, ``unknown_method``, ...

It also serves Socket Mode: ``apps.connections.open`` (with the ``xapp-`` token) hands out a
``ws://`` URL, the websocket greets with ``hello`` and ``send_socket_event`` pushes an
envelope to the client and waits for its ack, so a real Bolt ``AsyncSocketModeHandler`` can be
driven end to end.

The fake keeps the conversation state (messages, threads, reactions, files, users,
channels) so tests can assert on what the bot did rather than on the exact calls it made.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

from aiohttp import WSCloseCode, WSMsgType, web

__all__ = [
    "FakeFile",
    "FakeGrant",
    "FakeSlack",
    "FakeTeam",
    "SlackCall",
    "SlackChannel",
    "SlackEphemeral",
    "SlackMessage",
    "SlackUser",
    "SocketAckTimeout",
]

JSONDict = dict[str, Any]

#: Slack truncates/refuses ``text`` above this many characters.
MAX_TEXT_CHARS = 40_000
#: Documented limit for ``markdown_text`` (chat.postMessage and the streaming methods).
MAX_MARKDOWN_CHARS = 12_000
#: Slack refuses messages with more blocks than this.
MAX_BLOCKS = 50

_TS_RE = re.compile(r"^\d{1,12}\.\d{6}$")
_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
#: Methods Slack answers without a token (oauth.v2.access authenticates the app itself).
_NO_TOKEN_METHODS = frozenset({"oauth.v2.access", "api.test"})
#: Reads Slack limits to 1 a minute and 15 messages for apps outside the Marketplace.
_LIMITED_READS = frozenset({"conversations.replies", "conversations.history"})
#: Fields that Slack accepts as JSON-encoded strings inside form bodies.
_JSON_FIELDS: dict[str, str] = {
    "blocks": "invalid_blocks_format",
    "user_auth_blocks": "invalid_blocks_format",
    "attachments": "invalid_attachments",
    "metadata": "invalid_metadata_format",
    "chunks": "invalid_chunks",
    "files": "invalid_arguments",
    "view": "invalid_arguments",
    "prompts": "invalid_arguments",
}


@dataclass
class SlackCall:
    """One Web API request as the fake received it."""

    method: str
    #: Decoded arguments: query string, form fields (as ``str``) and JSON fields merged;
    #: JSON-encoded ``blocks``/``metadata``/... strings are decoded.  ``token`` is removed
    #: and kept in :attr:`token` instead.
    args: dict[str, Any]
    at: float
    token: str | None = None
    #: HTTP status the fake answered with.
    status: int = 200
    #: The Slack ``error`` the fake answered with, ``None`` for ``ok: true``.
    error: str | None = None
    #: The caller's address: which process made the call when several share one token.
    remote: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class SlackMessage:
    """Current state of one message in a channel."""

    channel: str
    ts: str
    text: str
    user: str | None = None
    bot_id: str | None = None
    #: The thread this message replies in; ``None`` for top-level messages (even parents).
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    markdown_text: str | None = None
    #: True between chat.startStream and chat.stopStream (or Slack ending the stream).
    streaming: bool = False
    #: When the stream last received something (time.monotonic()).
    streamed_at: float = 0.0
    #: Number of successful chat.update calls on this message.
    edited: int = 0
    #: Reaction name -> ids of the users who reacted.
    reactions: dict[str, set[str]] = field(default_factory=dict)
    #: ts of the last edit (chat.update), as Slack reports it under ``edited.ts``.
    edited_ts: str | None = None
    #: Non-text streaming chunks (plan/task updates, blocks) received while streaming.
    chunks: list[dict[str, Any]] = field(default_factory=list)
    #: chat.startStream's task_display_mode ("timeline" or "plan"), if given.
    task_display_mode: str | None = None
    #: Ids of files shared with this message (files.completeUploadExternal).
    files: list[str] = field(default_factory=list)
    #: The Web API calls that made and then changed it, in order (how it arrived).
    calls: list[SlackCall] = field(default_factory=list)


@dataclass
class SlackUser:
    id: str
    name: str
    display_name: str = ""
    real_name: str = ""
    is_bot: bool = False
    is_admin: bool = False
    is_owner: bool = False
    is_primary_owner: bool = False


@dataclass
class SlackChannel:
    id: str
    name: str
    is_im: bool = False
    is_private: bool = False
    #: For IMs: the human on the other side.
    user: str | None = None
    #: The workspace the channel belongs to (``None``: the fake's first team).
    team_id: str | None = None


@dataclass
class FakeTeam:
    """A workspace, optionally part of an Enterprise Grid organisation."""

    id: str
    name: str
    enterprise_id: str | None = None


@dataclass
class FakeGrant:
    """A bot token: one workspace's, or (org-wide install) every workspace of an org's."""

    token: str
    team_id: str | None
    enterprise_id: str | None
    bot_user_id: str
    bot_id: str
    expires_at: float | None = None
    refresh_token: str | None = None
    revoked: bool = False

    def covers(self, team: FakeTeam) -> bool:
        if self.team_id is not None:
            return team.id == self.team_id
        return self.enterprise_id is not None and team.enterprise_id == self.enterprise_id


@dataclass
class SlackEphemeral:
    """A chat.postEphemeral message (not part of the channel history, as in Slack)."""

    channel: str
    user: str
    text: str
    message_ts: str
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] | None = None


@dataclass
class FakeFile:
    id: str
    name: str
    length: int
    title: str | None = None
    #: Bytes POSTed to the upload URL; ``None`` until the upload happens.
    content: bytes | None = None
    completed: bool = False
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None


@dataclass
class _Failure:
    status: int
    error: str | None
    retry_after: int


class SocketAckTimeout(AssertionError, TimeoutError):
    """The Socket Mode client did not ack an envelope in time.

    Both an ``AssertionError`` (a failed test expectation) and a ``TimeoutError``, so either
    ``pytest.raises`` spelling works.
    """


class _ApiError(Exception):
    """Raised by handlers; turned into ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


_Handler = Callable[[JSONDict], JSONDict]


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def _ts_to_micros(ts: str) -> int:
    seconds, micros = _ts_key(ts)
    return seconds * 1_000_000 + micros


def _valid_ts(value: str | None) -> bool:
    return value is not None and _TS_RE.match(value) is not None


# --------------------------------------------------------------------------------------
# argument helpers


def _opt_str(args: JSONDict, name: str) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise _ApiError("invalid_arguments", response_metadata={"messages": [f"bad {name}"]})


def _req_str(args: JSONDict, name: str, error: str) -> str:
    value = _opt_str(args, name)
    if not value:
        raise _ApiError(error)
    return value


def _opt_bool(args: JSONDict, name: str, default: bool = False) -> bool:
    value = args.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes"}


def _opt_int(args: JSONDict, name: str, default: int) -> int:
    value = args.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _ApiError(
            "invalid_arguments", response_metadata={"messages": [f"bad {name}"]}
        ) from None


def _opt_blocks(args: JSONDict, name: str = "blocks") -> list[dict[str, Any]] | None:
    value = args.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(b, dict) and isinstance(b.get("type"), str) for b in value
    ):
        raise _ApiError("invalid_blocks")
    if len(value) > MAX_BLOCKS:
        raise _ApiError("invalid_blocks")
    return value


def _opt_metadata(args: JSONDict) -> dict[str, Any] | None:
    value = args.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("event_type"), str):
        raise _ApiError("invalid_metadata_format")
    return value


def _opt_chunks(args: JSONDict) -> list[dict[str, Any]]:
    value = args.get("chunks")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
        raise _ApiError("invalid_chunks")
    for chunk in value:
        if chunk.get("type") == "task_update" and (
            not isinstance(chunk.get("id"), str)
            or not isinstance(chunk.get("title"), str)
            or chunk.get("status") not in TASK_STATUSES
            or not all(
                isinstance(s, dict) and s.get("type") == "url" and isinstance(s.get("url"), str)
                for s in chunk.get("sources") or []
            )
        ):
            raise _ApiError("invalid_chunks")
    return value


TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        decoded = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _ApiError("invalid_cursor") from None
    prefix, _, ts = decoded.partition(":")
    if prefix != "next_ts" or not _valid_ts(ts):
        raise _ApiError("invalid_cursor")
    return ts


def _describe(predicate: Callable[[], bool]) -> str:
    with contextlib.suppress(OSError, TypeError):
        source = inspect.getsource(predicate).strip()
        return source if len(source) <= 300 else source[:297] + "..."
    return getattr(predicate, "__qualname__", repr(predicate))


class FakeSlack:
    """Fake Slack workspace: Web API + Socket Mode on ``127.0.0.1``.

    Use as ``async with FakeSlack() as fake:`` or call :meth:`start` / :meth:`stop`.
    Channels ``C0001`` (public, "general") and ``D0001`` (IM) exist by default; others can
    be created with :meth:`add_channel` (or implicitly by :meth:`add_message`).  Posting to
    an unknown channel fails with ``channel_not_found``, like Slack.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        team_id: str = "T0001",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        latency_s: float = 0.0,
        app_id: str = "A0001",
        channels: Iterable[str] = ("C0001", "D0001"),
        ts_start: float | None = 1_700_000_000.0,
        replies_repeat_parent: bool = False,
    ) -> None:
        """Create the fake (not yet listening; see :meth:`start`).

        ``ts_start`` is where generated message timestamps begin (``None``: the current
        time).  ``replies_repeat_parent`` makes conversations.replies put the parent message
        at the top of every page instead of only the first one, for exercising pagination
        code against both behaviours.
        """
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        #: Workspaces by id; the first is the one ``bot_token`` belongs to.
        self.teams: dict[str, FakeTeam] = {team_id: FakeTeam(team_id, "Fake Workspace")}
        #: Every bot token Slack knows, by token.
        self.grants: dict[str, FakeGrant] = {
            bot_token: FakeGrant(bot_token, team_id, None, bot_user_id, bot_id)
        }
        #: The app's credentials (Basic Information → App Credentials) for oauth.v2.access.
        self.client_id = "1111.2222"
        self.client_secret = "fake-client-secret"
        #: The app's configured Redirect URL, used when the authorize request names none.
        self.redirect_uri: str | None = None
        #: False: the installer presses Cancel on the consent page, and Slack sends them back
        #: with `error=access_denied` and no code.
        self.approve_installs = True
        #: With token rotation on, installs and refreshes hand out expiring tokens.
        self.token_rotation = False
        self.token_lifetime_s = 43_200
        self._codes: dict[str, tuple[str | None, str | None]] = {}
        #: Every OAuth code the consent page handed out (a secret while unused).
        self.codes_issued: list[str] = []
        self._refresh_tokens: dict[str, FakeGrant] = {}
        self._caller: FakeGrant | None = None
        #: Slack's limits for apps distributed outside the Marketplace (since 2025-05-29):
        #: conversations.replies/history once a minute per token, 15 messages a request.
        self.distributed_app_limits = False
        self._last_read: dict[str, float] = {}
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.latency_s = latency_s
        self.replies_repeat_parent = replies_repeat_parent

        self.calls: list[SlackCall] = []
        self.users: dict[str, SlackUser] = {}
        self.channels: dict[str, SlackChannel] = {}
        self.files: dict[str, FakeFile] = {}
        self.downloads: list[str] = []
        #: When set, file downloads arrive in pieces of this many bytes, each after
        #: ``download_pause_s``, with no Content-Length: what a slow network delivers.
        self.download_chunk_bytes: int | None = None
        self.download_pause_s = 0.0
        self._holds: dict[str, tuple[int, float]] = {}
        self._mimetypes: dict[str, str] = {}
        self.ephemerals: list[SlackEphemeral] = []
        self.deleted: list[SlackMessage] = []
        #: assistant.search.context: the action tokens Slack handed out (in message events),
        #: every search made, and an error to answer every search with (e.g. missing_scope).
        self.action_tokens: set[str] = set()
        self.searches: list[dict[str, Any]] = []
        self.search_error: str | None = None
        #: (team, user) pairs where users.info says the user is an admin of that workspace.
        self.workspace_admins: set[tuple[str, str]] = set()
        #: views.publish: user id -> the last published view.
        self.home_views: dict[str, dict[str, Any]] = {}
        #: views.open: every modal opened, in order.
        self.opened_views: list[dict[str, Any]] = []
        self._trigger_ids: dict[str, float] = {}
        #: Every text frame received over Socket Mode that carried an ``envelope_id``.
        self.socket_acks: list[dict[str, Any]] = []
        #: Every envelope sent with :meth:`send_socket_event`.
        self.socket_envelopes: list[dict[str, Any]] = []
        #: Like Slack with several connections open: each event goes to the next one in turn.
        #: Off by default, so a test's events go to the newest connection.
        self.spread_socket_events = False
        self._next_socket = 0
        #: Acks per Socket Mode connection, numbered 1, 2, … in the order they opened.
        self.acks_by_connection: dict[int, int] = {}
        self._connections_opened = 0
        #: The host the fake names in the URLs it gives out (Socket Mode, files).
        self.advertised_host = "127.0.0.1"
        #: Slack ends a stream that received nothing for this long (seconds; None: never);
        #: its message then refuses appends and stops with message_not_in_streaming_state.
        self.stream_timeout_s: float | None = None

        start = time.time() if ts_start is None else ts_start
        self._clock_us = int(start * 1_000_000)
        self._ids = 0
        self._messages: dict[str, dict[str, SlackMessage]] = {}
        self._failures: dict[str, deque[_Failure]] = {}
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._pending_acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

        self.add_user(bot_user_id, display_name="bot", real_name="Bot", is_bot=True)
        for channel in channels:
            self.add_channel(channel)

        self._handlers: dict[str, _Handler] = {
            "api.test": self._api_test,
            "oauth.v2.access": self._oauth_v2_access,
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "assistant.search.context": self._assistant_search_context,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "conversations.info": self._conversations_info,
            "users.info": self._users_info,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "assistant.threads.setStatus": self._ok,
            "assistant.threads.setTitle": self._ok,
            "assistant.threads.setSuggestedPrompts": self._ok,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "files.info": self._files_info,
        }

    # ----------------------------------------------------------------------------------
    # lifecycle

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start listening on ``host`` (``127.0.0.1``) on ``port`` (a free one)."""
        if self._runner is not None:
            raise RuntimeError("FakeSlack already started")
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        app.router.add_get("/files/{file_id}/{name}", self._handle_download)
        app.router.add_get("/socket-mode", self._handle_socket)
        app.router.add_get("/oauth/v2/authorize", self._handle_authorize)
        # A short shutdown timeout: a test that forgets to close a client must not hang.
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close Socket Mode connections and stop the server."""
        for future in self._pending_acks.values():
            if not future.done():
                future.cancel()
        self._pending_acks.clear()
        await self.close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeSlack is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.advertised_host}:{self.port}"

    @property
    def api_url(self) -> str:
        """Web API base URL; slack_sdk appends the method name."""
        return f"{self.base_url}/api/"

    # ----------------------------------------------------------------------------------
    # seeding and inspection

    def new_ts(self) -> str:
        """Next message timestamp; strictly increasing, ``"1700000000.000100"`` style."""
        self._clock_us += 100
        seconds, micros = divmod(self._clock_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids:08d}"

    def add_user(
        self,
        user_id: str,
        *,
        display_name: str = "",
        real_name: str = "",
        is_bot: bool = False,
        is_admin: bool = False,
        is_owner: bool = False,
        is_primary_owner: bool = False,
    ) -> None:
        """Register a user served by users.info (replaces an existing one).

        Workspace roles as Slack reports them: an owner is also an admin, the primary owner
        also an owner.
        """
        handle = (display_name or real_name or user_id).lower().replace(" ", ".")
        owner = is_owner or is_primary_owner
        self.users[user_id] = SlackUser(
            id=user_id,
            name=handle,
            display_name=display_name,
            real_name=real_name,
            is_bot=is_bot,
            is_admin=is_admin or owner,
            is_owner=owner,
            is_primary_owner=is_primary_owner,
        )

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str | None = None,
        is_im: bool | None = None,
        is_private: bool = False,
        user: str | None = None,
        team_id: str | None = None,
    ) -> SlackChannel:
        """Register a conversation; ``D…`` ids are IMs unless ``is_im`` says otherwise."""
        im = channel_id.startswith("D") if is_im is None else is_im
        channel = SlackChannel(
            id=channel_id,
            name=name or ("" if im else channel_id.lower()),
            is_im=im,
            is_private=is_private or im,
            user=user,
            team_id=team_id,
        )
        self.channels[channel_id] = channel
        self._messages.setdefault(channel_id, {})
        return channel

    def add_message(
        self,
        channel: str,
        *,
        user: str,
        text: str,
        ts: str | None = None,
        thread_ts: str | None = None,
    ) -> SlackMessage:
        """Seed a human message into the history (creating the channel if needed)."""
        if ts is None:
            ts = self.new_ts()
        elif not _valid_ts(ts):
            raise ValueError(f"bad Slack ts {ts!r}; expected e.g. '1700000000.000100'")
        else:
            # Generated timestamps must stay later than seeded ones.
            self._clock_us = max(self._clock_us, _ts_to_micros(ts))
        if channel not in self.channels:
            self.add_channel(channel)
        if ts in self._messages[channel]:
            raise ValueError(f"message {channel}/{ts} already exists")
        message = SlackMessage(
            channel=channel,
            ts=ts,
            text=text,
            user=user,
            thread_ts=None if thread_ts == ts else thread_ts,
        )
        self._messages[channel][ts] = message
        return message

    def ingest_event(self, body: dict[str, Any]) -> SlackMessage | None:
        """Record the message an Events API payload talks about, as Slack would have it.

        Accepts an ``event_callback`` envelope or a bare event.  ``message`` (without
        subtype) and ``app_mention`` events from humans are added to the history unless a
        message with that ts already exists; this is what makes conversations.replies find
        the user's message when the bot fetches thread context.  Returns the stored message.
        """
        event = body.get("event", body) if body.get("type") == "event_callback" else body
        if not isinstance(event, dict) or event.get("type") not in {"message", "app_mention"}:
            return None
        if event.get("subtype") not in {None, "thread_broadcast", "file_share"}:
            return None
        channel, ts, user = event.get("channel"), event.get("ts"), event.get("user")
        if event.get("bot_id") is not None or not isinstance(channel, str):
            return None
        if not isinstance(ts, str) or not isinstance(user, str) or not _valid_ts(ts):
            return None
        existing = self.message(channel, ts)
        if existing is not None:
            return existing
        thread_ts = event.get("thread_ts")
        return self.add_message(
            channel,
            user=user,
            text=str(event.get("text", "")),
            ts=ts,
            thread_ts=thread_ts if isinstance(thread_ts, str) else None,
        )

    def message(self, channel: str, ts: str) -> SlackMessage | None:
        """The current state of one message, or ``None`` (never existed or deleted)."""
        return self._messages.get(channel, {}).get(ts)

    def channel_messages(self, channel: str) -> list[SlackMessage]:
        """Every message in a channel (top-level and replies), ordered by ts."""
        return sorted(self._messages.get(channel, {}).values(), key=lambda m: _ts_key(m.ts))

    def bot_messages(self) -> list[SlackMessage]:
        """Every message the bot has posted (in any channel), ordered by ts."""
        found = [m for msgs in self._messages.values() for m in msgs.values() if m.bot_id]
        return sorted(found, key=lambda m: _ts_key(m.ts))

    def _thread_root(self, channel: str, ts: str) -> str:
        """Resolve a reply's ts to its parent's (Slack threads are one level deep)."""
        found = self.message(channel, ts)
        if found is not None and found.thread_ts is not None:
            return found.thread_ts
        return ts

    def _replies_of(self, channel: str, thread_ts: str) -> list[SlackMessage]:
        replies = [
            m
            for m in self._messages.get(channel, {}).values()
            if m.thread_ts == thread_ts and m.ts != thread_ts
        ]
        return sorted(replies, key=lambda m: _ts_key(m.ts))

    def thread(self, channel: str, thread_ts: str) -> list[SlackMessage]:
        """Parent (if it exists) followed by its replies, ordered by ts, current state."""
        root = self._thread_root(channel, thread_ts)
        parent = self.message(channel, root)
        replies = self._replies_of(channel, root)
        return ([parent] if parent is not None else []) + replies

    def bot_replies(self, channel: str, thread_ts: str) -> list[SlackMessage]:
        """Messages the bot posted in the thread (a bot-authored parent included)."""
        return [m for m in self.thread(channel, thread_ts) if m.bot_id is not None]

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        error: str | None = None,
        times: int = 1,
        retry_after: int = 1,
    ) -> None:
        """Make the next ``times`` calls to ``method`` fail (``"*"``: any method).

        * ``status=429``: HTTP 429 with ``Retry-After: retry_after`` and
          ``{"ok": false, "error": "ratelimited"}``;
        * ``status>=400`` otherwise (e.g. 500, 503): that HTTP status, JSON error body;
        * ``status=200``: ``{"ok": false, "error": error}`` (default ``internal_error``).

        Injected failures are consumed in order, before authentication and validation, and
        leave the fake's state untouched.
        """
        if status != 200 and not 400 <= status <= 599:
            raise ValueError(f"status must be 200 or 4xx/5xx, not {status}")
        queue = self._failures.setdefault(method, deque())
        for _ in range(times):
            queue.append(_Failure(status=status, error=error, retry_after=retry_after))

    def clear_failures(self, method: str) -> None:
        """Forget the failures still queued for ``method``."""
        self._failures.pop(method, None)

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 30.0,
        *,
        message: str | None = None,
    ) -> None:
        """Poll ``predicate`` every 10 ms until it is true.

        Raises ``AssertionError`` describing the predicate and the most recent Web API
        calls if it is still false after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() >= deadline:
                what = message or _describe(predicate)
                recent = "\n".join(f"  {self._call_summary(c)}" for c in self.calls[-15:])
                raise AssertionError(
                    f"condition not met within {timeout:g}s: {what}\n"
                    f"last Web API calls ({len(self.calls)} in total):\n{recent or '  (none)'}"
                )
            await asyncio.sleep(0.01)

    @staticmethod
    def _call_summary(call: SlackCall) -> str:
        outcome = "ok" if call.ok else f"{call.status} {call.error}"
        keys = ("channel", "channel_id", "ts", "thread_ts", "text", "markdown_text", "name")
        shown = {k: call.args[k] for k in keys if k in call.args}
        if isinstance(shown.get("text"), str) and len(shown["text"]) > 60:
            shown["text"] = shown["text"][:57] + "..."
        return f"{call.method} {shown} -> {outcome}"

    def render_thread(self, channel: str, thread_ts: str) -> str:
        """Human-readable transcript: ``Alice: text`` for people, ``bot: text`` for the bot."""
        lines: list[str] = []
        for msg in self.thread(channel, thread_ts):
            who = "bot" if msg.bot_id is not None else self._display_name(msg.user)
            text = msg.text or msg.markdown_text or ""
            if msg.streaming:
                text += " ▌"
            if msg.reactions:
                text += "  " + " ".join(
                    f":{name}:" for name, users in msg.reactions.items() if users
                )
            prefix = f"{who}: "
            body = text.replace("\n", "\n" + " " * len(prefix))
            lines.append(prefix + body)
        return "\n".join(lines)

    def _display_name(self, user_id: str | None) -> str:
        if user_id is None:
            return "?"
        user = self.users.get(user_id)
        if user is None:
            return user_id
        return user.display_name or user.real_name or user.id

    # ----------------------------------------------------------------------------------
    # Web API plumbing

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        parse_error: str | None = None
        try:
            args = await self._read_args(request)
        except _ApiError as exc:
            args, parse_error = {}, exc.error
        body_token = args.pop("token", None)
        token = self._bearer(request) or (body_token if isinstance(body_token, str) else None)
        # oauth.v2.access: the app's credentials as HTTP Basic auth (slack_sdk sends them so).
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                client_id, _, secret = base64.b64decode(credentials).decode().partition(":")
                args.setdefault("client_id", client_id)
                args.setdefault("client_secret", secret)
        parse_error = parse_error or self._decode_json_fields(args)
        call = SlackCall(
            method=method, args=args, at=time.monotonic(), token=token, remote=request.remote
        )
        self.calls.append(call)

        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)

        failure = self._take_failure(method) or self._over_replies_limit(method, token)
        if failure is not None:
            return self._failure_response(call, failure)

        status, body = 200, self._dispatch(method, token, args, parse_error)
        call.status = status
        call.error = None if body.get("ok") else str(body.get("error"))
        if call.error is None and method.startswith("chat.") and "ts" in body:
            made = self._messages.get(str(body.get("channel")), {}).get(str(body["ts"]))
            if made is not None:
                made.calls.append(call)
        hold = self._holds.get(method)
        if hold is not None and hold[0] > 0:
            self._holds[method] = (hold[0] - 1, hold[1])
            await asyncio.sleep(hold[1])
        return web.json_response(body, status=status)

    def hold_next(self, method: str, *, seconds: float, times: int = 1) -> None:
        """Carry out the next `times` calls at once but answer them `seconds` late: the message
        exists in Slack while the client still waits (a crash test's window)."""
        self._holds[method] = (times, seconds)

    def _dispatch(
        self, method: str, token: str | None, args: JSONDict, parse_error: str | None
    ) -> JSONDict:
        handler = self._handlers.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method", "req_method": method}
        auth_error = self._check_token(method, token)
        if auth_error is not None:
            return {"ok": False, "error": auth_error}
        if parse_error is not None:
            return {"ok": False, "error": parse_error}
        try:
            result = handler(args)
        except _ApiError as exc:
            return {"ok": False, "error": exc.error, **exc.extra}
        return {"ok": True, **result}

    @staticmethod
    def _bearer(request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None

    @staticmethod
    async def _read_args(request: web.Request) -> JSONDict:
        args: JSONDict = dict(request.query)
        if not request.can_read_body:
            return args
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _ApiError("invalid_json") from None
            if not isinstance(body, dict):
                raise _ApiError("invalid_json")
            args.update(body)
        elif content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    args[key] = value.file.read()
                else:
                    args[key] = value
        return args

    @staticmethod
    def _decode_json_fields(args: JSONDict) -> str | None:
        """Decode JSON-encoded form values in place; return an error code if one is bad."""
        error: str | None = None
        for name, error_code in _JSON_FIELDS.items():
            value = args.get(name)
            if not isinstance(value, str):
                continue
            try:
                args[name] = json.loads(value)
            except ValueError:
                error = error or error_code
        return error

    def _check_token(self, method: str, token: str | None) -> str | None:
        self._caller = None
        if method in _NO_TOKEN_METHODS:
            return None
        if not token:
            return "not_authed"
        grant = self.grants.get(token)
        if grant is None and token != self.app_token:
            return "invalid_auth"
        wants_app_token = method in _APP_TOKEN_METHODS
        if (token == self.app_token) != wants_app_token:
            return "not_allowed_token_type"
        if grant is not None:
            if grant.revoked:
                return "token_revoked"
            if grant.expires_at is not None and time.time() >= grant.expires_at:
                return "token_expired"
            self._caller = grant
        return None

    def _over_replies_limit(self, method: str, token: str | None) -> _Failure | None:
        """Apps distributed outside the Marketplace: conversations.replies (and .history) once
        a minute per workspace token; more is HTTP 429 with Retry-After."""
        if not self.distributed_app_limits or method not in _LIMITED_READS:
            return None
        now = time.monotonic()
        last = self._last_read.get(token or "")
        if last is not None and now - last < 60:
            return _Failure(status=429, error="ratelimited", retry_after=int(60 - (now - last)) + 1)
        self._last_read[token or ""] = now
        return None

    def _take_failure(self, method: str) -> _Failure | None:
        for key in (method, "*"):
            queue = self._failures.get(key)
            if queue:
                return queue.popleft()
        return None

    @staticmethod
    def _failure_response(call: SlackCall, failure: _Failure) -> web.Response:
        headers: dict[str, str] = {}
        if failure.status == 429:
            error = failure.error or "ratelimited"
            headers["Retry-After"] = str(failure.retry_after)
        else:
            error = failure.error or "internal_error"
        call.status = failure.status
        call.error = error
        return web.json_response(
            {"ok": False, "error": error}, status=failure.status, headers=headers
        )

    # ----------------------------------------------------------------------------------
    # shared validation / serialisation

    def _channel(self, args: JSONDict, name: str = "channel") -> SlackChannel:
        channel_id = _opt_str(args, name)
        channel = self.channels.get(channel_id) if channel_id else None
        if channel is None:
            raise _ApiError("channel_not_found")
        # Like Slack, a token sees only its own workspace's (or organisation's) channels.
        if self._caller is not None and not self._caller.covers(self.team_of(channel.id)):
            raise _ApiError("channel_not_found")
        return channel

    def _own_message(self, channel: str, ts: str | None, not_mine: str) -> SlackMessage:
        message = self.message(channel, ts) if ts else None
        if message is None:
            raise _ApiError("message_not_found")
        if message.bot_id != self._bot()[1]:
            raise _ApiError(not_mine)
        return message

    @staticmethod
    def _check_lengths(text: str | None, markdown_text: str | None) -> None:
        if text is not None and len(text) > MAX_TEXT_CHARS:
            raise _ApiError("msg_too_long")
        if markdown_text is not None and len(markdown_text) > MAX_MARKDOWN_CHARS:
            raise _ApiError("msg_too_long")

    def _message_json(self, msg: SlackMessage, *, include_metadata: bool = True) -> JSONDict:
        out: JSONDict = {"type": "message", "ts": msg.ts, "text": msg.text}
        if msg.user is not None:
            out["user"] = msg.user
        if msg.bot_id is not None:
            out["bot_id"] = msg.bot_id
            out["app_id"] = self.app_id
        out["team"] = self.team_of(msg.channel).id
        if msg.thread_ts is not None:
            out["thread_ts"] = msg.thread_ts
            parent = self.message(msg.channel, msg.thread_ts)
            if parent is not None and parent.user is not None:
                out["parent_user_id"] = parent.user
        else:
            replies = self._replies_of(msg.channel, msg.ts)
            if replies:
                reply_users = sorted({r.user for r in replies if r.user})
                out["thread_ts"] = msg.ts
                out["reply_count"] = len(replies)
                out["reply_users"] = reply_users
                out["reply_users_count"] = len(reply_users)
                out["latest_reply"] = replies[-1].ts
        if msg.blocks is not None:
            out["blocks"] = msg.blocks
        if include_metadata and msg.metadata is not None:
            out["metadata"] = msg.metadata
        if msg.edited_ts is not None:
            out["edited"] = {"user": msg.user or "", "ts": msg.edited_ts}
        reactions = [
            {"name": name, "users": sorted(users), "count": len(users)}
            for name, users in msg.reactions.items()
            if users
        ]
        if reactions:
            out["reactions"] = reactions
        if msg.files:
            out["files"] = [self._file_json(self.files[f]) for f in msg.files if f in self.files]
        return out

    def _file_json(self, file: FakeFile) -> JSONDict:
        return {
            "id": file.id,
            "name": file.name,
            "title": file.title or file.name,
            "size": len(file.content) if file.content is not None else file.length,
            "user": self.bot_user_id,
            "channels": [file.channel] if file.channel else [],
            "url_private": f"{self.base_url}/files/{file.id}/{file.name}",
        }

    def _paginate(
        self, messages: list[SlackMessage], args: JSONDict, *, default_limit: int
    ) -> tuple[list[SlackMessage], str | None]:
        limit = _opt_int(args, "limit", default_limit)
        if limit <= 0 or limit > 1000:
            limit = default_limit
        start = 0
        cursor = _opt_str(args, "cursor")
        if cursor:
            cursor_ts = _decode_cursor(cursor)
            keys = [_ts_key(m.ts) for m in messages]
            start = next((i for i, k in enumerate(keys) if k >= _ts_key(cursor_ts)), len(keys))
            if not messages or start == len(messages):
                return [], None
        page = messages[start : start + limit]
        next_cursor = None
        if start + limit < len(messages):
            next_cursor = _encode_cursor(messages[start + limit].ts)
        return page, next_cursor

    # ----------------------------------------------------------------------------------
    # Web API methods (handlers return the body without "ok"; raise _ApiError on errors)

    def _ok(self, args: JSONDict) -> JSONDict:
        return {}

    def _api_test(self, args: JSONDict) -> JSONDict:
        return {"args": {k: v for k, v in args.items() if isinstance(v, str)}}

    def _auth_test(self, args: JSONDict) -> JSONDict:
        grant = self._caller
        if grant is None or grant.token == self.bot_token:
            return {
                "url": "https://fake-workspace.slack.com/",
                "team": "Fake Workspace",
                "user": self.users[self.bot_user_id].name,
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            }
        team = self.teams.get(grant.team_id or "")
        return {
            "url": f"https://{(grant.team_id or grant.enterprise_id or '').lower()}.slack.com/",
            "team": team.name if team else None,
            "user": "bot",
            "team_id": grant.team_id,
            "enterprise_id": grant.enterprise_id,
            "user_id": grant.bot_user_id,
            "bot_id": grant.bot_id,
            "is_enterprise_install": grant.team_id is None,
        }

    # ----------------------------------------------------------------------------------
    # Workspaces, installs (OAuth) and tokens

    def add_team(
        self, team_id: str, *, name: str = "", enterprise_id: str | None = None
    ) -> FakeTeam:
        """Another workspace (of an Enterprise Grid organisation when `enterprise_id`)."""
        team = FakeTeam(team_id, name or f"Workspace {team_id}", enterprise_id)
        self.teams[team_id] = team
        return team

    def team_of(self, channel_id: str) -> FakeTeam:
        channel = self.channels.get(channel_id)
        return self.teams[(channel.team_id if channel else None) or self.team_id]

    def _bot(self) -> tuple[str, str]:
        """The (bot user id, bot id) of the token making the current call."""
        grant = self._caller
        if grant is None:
            return self.bot_user_id, self.bot_id
        return grant.bot_user_id, grant.bot_id

    def tokens_of(self, team_id: str) -> set[str]:
        """Every live token that can act in the workspace (its own or its org's)."""
        team = self.teams[team_id]
        return {t for t, g in self.grants.items() if g.covers(team) and not g.revoked}

    def _issue_grant(self, team_id: str | None, enterprise_id: str | None) -> FakeGrant:
        key = team_id or enterprise_id or ""
        # The app has one bot user per workspace, however it was installed there: in the
        # first workspace, the one `bot_token` belongs to, an OAuth install gets the same (as
        # does an org-wide install of its organisation, whose bot user is the org's).
        first = team_id == self.team_id or (
            team_id is None and self.teams[self.team_id].enterprise_id == enterprise_id
        )
        grant = FakeGrant(
            token=f"xoxb-{key}-{uuid.uuid4().hex[:8]}",
            team_id=team_id,
            enterprise_id=enterprise_id,
            bot_user_id=self.bot_user_id if first else f"UBOT{key}" if team_id else f"WBOT{key}",
            bot_id=self.bot_id if first else f"B{key}",
        )
        if self.token_rotation:
            # As long as Slack's own rotating tokens (about 150 characters).
            grant.token = f"xoxe.{grant.token}-{_long_secret()}"
            grant.expires_at = time.time() + self.token_lifetime_s
            grant.refresh_token = f"xoxe-1-{_long_secret()}"
            self._refresh_tokens[grant.refresh_token] = grant
        self.grants[grant.token] = grant
        return grant

    async def _handle_authorize(self, request: web.Request) -> web.StreamResponse:
        """The consent page at slack.com/oauth/v2/authorize, approved at once: the installer
        is sent back to the redirect URL with a one-time code. `team` picks the workspace,
        or an organisation (an `E…` id) for an org-wide install."""
        query = request.query
        if query.get("client_id") != self.client_id:
            return web.Response(status=400, text="invalid client_id")
        target = query.get("team") or self.team_id
        redirect = query.get("redirect_uri") or self.redirect_uri
        if not redirect:
            return web.Response(status=400, text="no redirect_uri")
        if target in self.teams:
            grant_for = (target, self.teams[target].enterprise_id)
        else:
            grant_for = (None, target)
        state = query.get("state", "")
        if not self.approve_installs:
            raise web.HTTPFound(
                f"{redirect}?{urlencode({'error': 'access_denied', 'state': state})}"
            )
        code = uuid.uuid4().hex
        self._codes[code] = grant_for
        self.codes_issued.append(code)
        location = f"{redirect}?code={code}&state={state}"
        raise web.HTTPFound(location)

    def _oauth_v2_access(self, args: JSONDict) -> JSONDict:
        if args.get("client_id") != self.client_id:
            raise _ApiError("invalid_client_id")
        if args.get("client_secret") != self.client_secret:
            raise _ApiError("bad_client_secret")
        if args.get("grant_type") == "refresh_token":
            return self._refresh_grant(str(args.get("refresh_token") or ""))
        code = str(args.get("code") or "")
        if code not in self._codes:
            raise _ApiError("invalid_code")
        team_id, enterprise_id = self._codes.pop(code)
        grant = self._issue_grant(team_id, enterprise_id)
        team = self.teams.get(team_id or "")
        body: JSONDict = {
            "access_token": grant.token,
            "token_type": "bot",
            "scope": "app_mentions:read,chat:write",
            "bot_user_id": grant.bot_user_id,
            "app_id": self.app_id,
            "team": {"id": team.id, "name": team.name} if team else None,
            "enterprise": {"id": enterprise_id, "name": f"Org {enterprise_id}"}
            if enterprise_id
            else None,
            "is_enterprise_install": team_id is None,
            "authed_user": {"id": "UINSTALLER"},
        }
        if grant.expires_at is not None:
            body["refresh_token"] = grant.refresh_token
            body["expires_in"] = int(grant.expires_at - time.time())
        return body

    def _refresh_grant(self, refresh_token: str) -> JSONDict:
        """A refresh token is good for one refresh: the new token comes with a new one. The
        old access token stays valid until it expires, as Slack's do."""
        old = self._refresh_tokens.pop(refresh_token, None)
        if old is None or old.revoked:
            raise _ApiError("invalid_refresh_token")
        rotation, self.token_rotation = self.token_rotation, True
        try:
            grant = self._issue_grant(old.team_id, old.enterprise_id)
        finally:
            self.token_rotation = rotation
        grant.bot_user_id, grant.bot_id = old.bot_user_id, old.bot_id
        return {
            "access_token": grant.token,
            "token_type": "bot",
            "refresh_token": grant.refresh_token,
            "expires_in": int((grant.expires_at or time.time()) - time.time()),
            "team": {"id": old.team_id} if old.team_id else None,
            "enterprise": {"id": old.enterprise_id} if old.enterprise_id else None,
        }

    def refreshes(self) -> list[SlackCall]:
        """The oauth.v2.access calls that refreshed a token."""
        return [c for c in self.calls_to("oauth.v2.access") if c.args.get("grant_type")]

    def expire_soon(self, team_or_enterprise: str, *, in_s: float) -> None:
        """Make the live tokens of a workspace (or org) expire in `in_s` seconds."""
        for grant in self.grants.values():
            if team_or_enterprise in (grant.team_id, grant.enterprise_id) and grant.expires_at:
                grant.expires_at = time.time() + in_s

    def refuse_refresh_tokens(self, team_or_enterprise: str) -> None:
        """Slack stops accepting the workspace's (or org's) refresh tokens: each is then
        answered `invalid_refresh_token` (as one already used, or invalidated, is)."""
        for token, grant in list(self._refresh_tokens.items()):
            if team_or_enterprise in (grant.team_id, grant.enterprise_id):
                del self._refresh_tokens[token]

    def revoke(self, token: str) -> None:
        """One token stops working (as auth.revoke, or an admin revoking it, does)."""
        self.grants[token].revoked = True

    def uninstall(self, team_or_enterprise: str) -> None:
        """The workspace (or org) removes the app: its tokens stop working at once."""
        for grant in self.grants.values():
            if team_or_enterprise in (grant.team_id, grant.enterprise_id):
                grant.revoked = True

    def _apps_connections_open(self, args: JSONDict) -> JSONDict:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        url = (
            f"ws://{self.advertised_host}:{self.port}/socket-mode"
            f"?ticket={ticket}&app_id={self.app_id}"
        )
        return {"url": url}

    def _chat_post_message(self, args: JSONDict) -> JSONDict:
        channel = self._channel(args)
        text = _opt_str(args, "text")
        markdown_text = _opt_str(args, "markdown_text")
        blocks = _opt_blocks(args)
        metadata = _opt_metadata(args)
        if markdown_text is not None and (text or blocks):
            raise _ApiError("markdown_text_conflict")
        if not text and not blocks and not markdown_text and not args.get("attachments"):
            raise _ApiError("no_text")
        self._check_lengths(text, markdown_text)
        thread_ts = _opt_str(args, "thread_ts")
        if thread_ts is not None:
            if not _valid_ts(thread_ts):
                raise _ApiError("invalid_thread_ts")
            # Slack accepts replies to messages it delivered as events even if this fake
            # never saw them, so an unknown thread_ts is not an error here.
            thread_ts = self._thread_root(channel.id, thread_ts)
        msg = SlackMessage(
            channel=channel.id,
            ts=self.new_ts(),
            text=text if text is not None else (markdown_text or ""),
            user=self._bot()[0],
            bot_id=self._bot()[1],
            thread_ts=thread_ts,
            blocks=blocks,
            metadata=metadata,
            markdown_text=markdown_text,
        )
        self._messages[channel.id][msg.ts] = msg
        return {"channel": channel.id, "ts": msg.ts, "message": self._message_json(msg)}

    def _chat_update(self, args: JSONDict) -> JSONDict:
        channel = self._channel(args)
        msg = self._own_message(channel.id, _opt_str(args, "ts"), "cant_update_message")
        text = _opt_str(args, "text")
        markdown_text = _opt_str(args, "markdown_text")
        blocks = _opt_blocks(args)
        metadata = _opt_metadata(args)
        if markdown_text is not None and (text or blocks):
            raise _ApiError("markdown_text_conflict")
        content = (text, blocks, markdown_text, metadata, args.get("attachments"))
        if all(part is None for part in content) and args.get("file_ids") is None:
            raise _ApiError("no_text")
        self._check_lengths(text, markdown_text)
        if text is not None:
            msg.text = text
        if markdown_text is not None:
            msg.markdown_text = markdown_text
            if text is None:
                msg.text = markdown_text
        if blocks is not None:
            msg.blocks = blocks
        if metadata is not None:
            msg.metadata = metadata
        msg.edited += 1
        msg.edited_ts = self.new_ts()
        return {
            "channel": channel.id,
            "ts": msg.ts,
            "text": msg.text,
            "message": self._message_json(msg),
        }

    def _chat_delete(self, args: JSONDict) -> JSONDict:
        channel = self._channel(args)
        msg = self._own_message(channel.id, _opt_str(args, "ts"), "cant_delete_message")
        del self._messages[channel.id][msg.ts]
        self.deleted.append(msg)
        return {"channel": channel.id, "ts": msg.ts}

    def _chat_post_ephemeral(self, args: JSONDict) -> JSONDict:
        channel = self._channel(args)
        user = _req_str(args, "user", "user_not_in_channel")
        text = _opt_str(args, "text")
        blocks = _opt_blocks(args)
        if not text and not blocks and not args.get("attachments"):
            raise _ApiError("no_text")
        self._check_lengths(text, None)
        ephemeral = SlackEphemeral(
            channel=channel.id,
            user=user,
            text=text or "",
            message_ts=self.new_ts(),
            thread_ts=_opt_str(args, "thread_ts"),
            blocks=blocks,
        )
        self.ephemerals.append(ephemeral)
        return {"message_ts": ephemeral.message_ts}

    def expire_action_token(self, token: str) -> None:
        """An action token is good for a short while only: after this it is refused."""
        self.action_tokens.discard(token)

    def make_admin(self, user_id: str, team_id: str) -> None:
        """`user_id` is an admin of the workspace `team_id` (and no other, unless made so):
        on Enterprise Grid one person has a role in each workspace of the organisation."""
        self.workspace_admins.add((team_id, user_id))

    def new_action_token(self) -> str:
        """A token as Slack puts in a message event for AI apps (for Real-time Search)."""
        token = f"act-{uuid.uuid4().hex}"
        self.action_tokens.add(token)
        return token

    def _assistant_search_context(self, args: JSONDict) -> JSONDict:
        """Real-time Search over the fake's messages: those holding every query word, newest
        first, each with its permalink, as the asking user may see (bots' left out)."""
        self.searches.append(dict(args))
        if self.search_error is not None:
            raise _ApiError(self.search_error)
        query = _opt_str(args, "query")
        if not query:
            raise _ApiError("invalid_arguments")
        if _opt_str(args, "action_token") not in self.action_tokens:
            raise _ApiError("invalid_action_token")
        words = query.lower().split()
        kinds = self._search_channel_types(args)
        found = [
            msg
            for channel_id, channel in self._messages.items()
            if self._channel_kind(channel_id) in kinds
            for msg in channel.values()
            if msg.bot_id is None
            and all(word in msg.text.lower() for word in words)
            # Only what the calling token's workspace (or organisation) holds.
            and (self._caller is None or self._caller.covers(self.team_of(msg.channel)))
        ]
        found.sort(key=lambda msg: msg.ts, reverse=True)
        limit = args.get("limit") if isinstance(args.get("limit"), int) else 20
        results = []
        for msg in found[:limit]:
            user = self.users.get(msg.user or "")
            channel = self.channels.get(msg.channel)
            results.append(
                {
                    "author_name": user.display_name if user else msg.user,
                    "author_user_id": msg.user,
                    "team_id": self.team_id,
                    "channel_id": msg.channel,
                    "channel_name": channel.name if channel else msg.channel,
                    "message_ts": msg.ts,
                    "content": msg.text,
                    "is_author_bot": False,
                    "permalink": self._permalink(msg.channel, msg.ts),
                }
            )
        return {"results": {"messages": results}}

    @staticmethod
    def _search_channel_types(args: JSONDict) -> set[str]:
        """Which conversations a search covers: public channels unless ``channel_types``
        asks for more (Slack's documented default), as a list or a comma-separated string."""
        raw = args.get("channel_types")
        if raw is None:
            return {"public_channel"}
        kinds = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(kinds, list) or not kinds:
            raise _ApiError("invalid_arguments")
        known = {"public_channel", "private_channel", "mpim", "im"}
        if not set(kinds) <= known:
            raise _ApiError("invalid_arguments")
        return set(kinds)

    def _channel_kind(self, channel_id: str) -> str:
        channel = self.channels.get(channel_id)
        if channel is None or not (channel.is_im or channel.is_private):
            return "public_channel"
        if channel.is_im:
            return "im"
        return "mpim" if channel.name.startswith("mpdm-") else "private_channel"

    def _permalink(self, channel_id: str, ts: str) -> str:
        message_id = "p" + ts.replace(".", "")
        return f"https://fake-workspace.slack.com/archives/{channel_id}/{message_id}"

    def _chat_get_permalink(self, args: JSONDict) -> JSONDict:
        channel = self._channel(args)
        ts = _opt_str(args, "message_ts")
        if ts is None or self.message(channel.id, ts) is None:
            raise _ApiError("message_not_found")
        message_id = "p" + ts.replace(".", "")
        permalink = f"https://fake-workspace.slack.com/archives/{channel.id}/{message_id}"
        return {"channel": channel.id, "permalink": permalink}

    def _stream_content(self, msg: SlackMessage, args: JSONDict) -> None:
        """Append ``markdown_text`` and ``markdown_text`` chunks; keep other chunks."""
        markdown_text = _opt_str(args, "markdown_text")
        self._check_lengths(None, markdown_text)
        pieces = [markdown_text] if markdown_text else []
        for chunk in _opt_chunks(args):
            if chunk.get("type") == "markdown_text":
                pieces.append(str(chunk.get("text", "")))
            else:
                msg.chunks.append(chunk)
        if pieces:
            msg.markdown_text = (msg.markdown_text or "") + "".join(pieces)
            msg.text = msg.markdown_text
            if len(msg.text) > MAX_TEXT_CHARS:
                raise _ApiError("msg_too_long")

    def _chat_start_stream(self, args: JSONDict) -> JSONDict:
        channel = self._channel(args)
        if not channel.is_im:
            missing = [k for k in ("recipient_team_id", "recipient_user_id") if not args.get(k)]
            if missing:
                messages = [f"[ERROR] missing required field: {k}" for k in missing]
                raise _ApiError("invalid_arguments", response_metadata={"messages": messages})
        thread_ts = _opt_str(args, "thread_ts")
        if thread_ts is not None:
            if not _valid_ts(thread_ts):
                raise _ApiError("invalid_thread_ts")
            thread_ts = self._thread_root(channel.id, thread_ts)
        mode = _opt_str(args, "task_display_mode")
        if mode not in (None, "timeline", "plan"):
            raise _ApiError("invalid_arguments")
        msg = SlackMessage(
            channel=channel.id,
            ts=self.new_ts(),
            text="",
            user=self._bot()[0],
            bot_id=self._bot()[1],
            thread_ts=thread_ts,
            streaming=True,
            streamed_at=time.monotonic(),
            task_display_mode=mode,
        )
        self._stream_content(msg, args)
        self._messages[channel.id][msg.ts] = msg
        return {"channel": channel.id, "ts": msg.ts}

    def _streaming_message(self, args: JSONDict) -> SlackMessage:
        channel = self._channel(args)
        msg = self._own_message(channel.id, _opt_str(args, "ts"), "cant_update_message")
        timeout = self.stream_timeout_s
        if timeout is not None and time.monotonic() - msg.streamed_at >= timeout:
            msg.streaming = False  # Slack ended the idle stream on its own
        if not msg.streaming:
            raise _ApiError("message_not_in_streaming_state")
        msg.streamed_at = time.monotonic()
        return msg

    def _chat_append_stream(self, args: JSONDict) -> JSONDict:
        msg = self._streaming_message(args)
        if not args.get("markdown_text") and not args.get("chunks"):
            raise _ApiError("no_text")
        self._stream_content(msg, args)
        return {"channel": msg.channel, "ts": msg.ts}

    def _chat_stop_stream(self, args: JSONDict) -> JSONDict:
        msg = self._streaming_message(args)
        blocks = _opt_blocks(args)
        metadata = _opt_metadata(args)
        self._stream_content(msg, args)
        if blocks is not None:
            msg.blocks = blocks
        if metadata is not None:
            msg.metadata = metadata
        msg.streaming = False
        return {"channel": msg.channel, "ts": msg.ts, "message": self._message_json(msg)}

    def _conversations_replies(self, args: JSONDict) -> JSONDict:
        channel = self._channel(args)
        ts = _opt_str(args, "ts")
        if not ts or not _valid_ts(ts):
            raise _ApiError("thread_not_found")
        messages = self.thread(channel.id, ts)
        if not messages:
            raise _ApiError("thread_not_found")
        parent = messages[0] if messages[0].thread_ts is None else None
        inclusive = _opt_bool(args, "inclusive")
        latest, oldest = _opt_str(args, "latest"), _opt_str(args, "oldest")
        if latest is not None and _valid_ts(latest):
            bound = _ts_key(latest)
            messages = [
                m
                for m in messages
                if _ts_key(m.ts) < bound or (inclusive and _ts_key(m.ts) == bound)
            ]
        if oldest is not None and _valid_ts(oldest):
            bound = _ts_key(oldest)
            messages = [
                m
                for m in messages
                if _ts_key(m.ts) > bound or (inclusive and _ts_key(m.ts) == bound)
            ]
        if self.distributed_app_limits:
            # Apps outside the Marketplace: at most 15 messages a request.
            args = {**args, "limit": str(min(_opt_int(args, "limit", 15), 15))}
        page, next_cursor = self._paginate(messages, args, default_limit=1000)
        if self.replies_repeat_parent and parent is not None and page and page[0] is not parent:
            page = [parent, *page]
        include_metadata = _opt_bool(args, "include_all_metadata")
        body: JSONDict = {
            "messages": [self._message_json(m, include_metadata=include_metadata) for m in page],
            "has_more": next_cursor is not None,
        }
        if next_cursor is not None:
            body["response_metadata"] = {"next_cursor": next_cursor}
        return body

    def _conversations_history(self, args: JSONDict) -> JSONDict:
        channel = self._channel(args)
        top_level = [m for m in self.channel_messages(channel.id) if m.thread_ts is None]
        top_level.reverse()  # newest first, like Slack
        # The cursor scheme points at "the first message at or after ts" in ts order; for a
        # newest-first listing that is emulated by paginating over reversed keys.
        limit = _opt_int(args, "limit", 100)
        if limit <= 0 or limit > 1000:
            limit = 100
        start = 0
        cursor = _opt_str(args, "cursor")
        if cursor:
            cursor_ts = _ts_key(_decode_cursor(cursor))
            start = next(
                (i for i, m in enumerate(top_level) if _ts_key(m.ts) <= cursor_ts), len(top_level)
            )
        page = top_level[start : start + limit]
        include_metadata = _opt_bool(args, "include_all_metadata")
        body: JSONDict = {
            "messages": [self._message_json(m, include_metadata=include_metadata) for m in page],
            "has_more": start + limit < len(top_level),
        }
        if body["has_more"]:
            body["response_metadata"] = {"next_cursor": _encode_cursor(top_level[start + limit].ts)}
        return body

    def _conversations_info(self, args: JSONDict) -> JSONDict:
        channel = self._channel(args)
        if channel.is_im:
            info: JSONDict = {
                "id": channel.id,
                "created": 1_600_000_000,
                "is_im": True,
                "is_org_shared": False,
                "user": channel.user or "",
                "is_user_deleted": False,
                "priority": 0,
            }
        else:
            info = {
                "id": channel.id,
                "name": channel.name,
                "name_normalized": channel.name,
                "created": 1_600_000_000,
                "is_channel": not channel.is_private,
                "is_group": channel.is_private,
                "is_im": False,
                "is_mpim": False,
                "is_private": channel.is_private,
                "is_archived": False,
                "is_general": channel.name == "general",
                "is_member": True,
                "is_shared": False,
                "is_ext_shared": False,
                "is_org_shared": False,
            }
        return {"channel": info}

    def _calling_team(self) -> str | None:
        """The workspace of the token making the call (None: an org-wide token's)."""
        return self.team_id if self._caller is None else self._caller.team_id

    def _users_info(self, args: JSONDict) -> JSONDict:
        user_id = _opt_str(args, "user")
        user = self.users.get(user_id) if user_id else None
        if user is None:
            raise _ApiError("user_not_found")
        profile: JSONDict = {
            "display_name": user.display_name,
            "display_name_normalized": user.display_name,
            "real_name": user.real_name,
            "real_name_normalized": user.real_name,
            "team": self.team_id,
        }
        if user.id == self.bot_user_id:
            profile["bot_id"] = self.bot_id
        return {
            "user": {
                "id": user.id,
                "team_id": self.team_id,
                "name": user.name,
                "real_name": user.real_name,
                "deleted": False,
                "is_bot": user.is_bot,
                "is_app_user": False,
                "is_admin": user.is_admin
                or (self._calling_team(), user.id) in self.workspace_admins,
                "is_owner": user.is_owner,
                "is_primary_owner": user.is_primary_owner,
                "tz": "UTC",
                "profile": profile,
            }
        }

    def _reaction_target(self, args: JSONDict) -> tuple[SlackMessage, str]:
        channel = self._channel(args)
        ts = _opt_str(args, "timestamp")
        msg = self.message(channel.id, ts) if ts else None
        if msg is None:
            raise _ApiError("message_not_found")
        name = (_opt_str(args, "name") or "").strip(":")
        if not name or any(c.isspace() for c in name):
            raise _ApiError("invalid_name")
        return msg, name

    def _reactions_add(self, args: JSONDict) -> JSONDict:
        msg, name = self._reaction_target(args)
        users = msg.reactions.setdefault(name, set())
        if self.bot_user_id in users:
            raise _ApiError("already_reacted")
        users.add(self.bot_user_id)
        return {}

    def _reactions_remove(self, args: JSONDict) -> JSONDict:
        msg, name = self._reaction_target(args)
        users = msg.reactions.get(name)
        if not users or self.bot_user_id not in users:
            raise _ApiError("no_reaction")
        users.discard(self.bot_user_id)
        if not users:
            del msg.reactions[name]
        return {}

    def _views_publish(self, args: JSONDict) -> JSONDict:
        user_id = _req_str(args, "user_id", "invalid_arguments")
        view = args.get("view")
        if not isinstance(view, dict) or not isinstance(view.get("type"), str):
            raise _ApiError("invalid_arguments")
        self.home_views[user_id] = view
        return {"view": {"id": self._new_id("V"), "team_id": self.team_id, **view}}

    def new_trigger_id(self) -> str:
        """A trigger id as Slack sends with an interaction: usable once, for 3 seconds."""
        trigger_id = f"{self._ids + 1}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"
        self._ids += 1
        self._trigger_ids[trigger_id] = time.monotonic() + 3.0
        return trigger_id

    def _views_open(self, args: JSONDict) -> JSONDict:
        trigger_id = _req_str(args, "trigger_id", "invalid_trigger_id")
        expires = self._trigger_ids.pop(trigger_id, None)
        if expires is None:
            raise _ApiError("invalid_trigger_id")
        if time.monotonic() > expires:
            raise _ApiError("expired_trigger_id")
        view = args.get("view")
        if not isinstance(view, dict) or view.get("type") != "modal":
            raise _ApiError("invalid_arguments")
        self.opened_views.append(view)
        return {"view": {"id": self._new_id("V"), "team_id": self.team_id, **view}}

    def _files_get_upload_url_external(self, args: JSONDict) -> JSONDict:
        filename = _req_str(args, "filename", "invalid_arguments")
        length = _opt_int(args, "length", -1)
        if length < 0:
            raise _ApiError("invalid_arguments")
        file = FakeFile(id=self._new_id("F"), name=filename, length=length)
        self.files[file.id] = file
        return {"upload_url": f"{self.base_url}/upload/{file.id}", "file_id": file.id}

    def _files_complete_upload_external(self, args: JSONDict) -> JSONDict:
        entries = args.get("files")
        if not isinstance(entries, list) or not entries:
            raise _ApiError("invalid_arguments")
        channel = self._channel(args, "channel_id") if args.get("channel_id") else None
        thread_ts = _opt_str(args, "thread_ts")
        comment = _opt_str(args, "initial_comment")
        completed: list[FakeFile] = []
        for entry in entries:
            file = self.files.get(str(entry.get("id"))) if isinstance(entry, dict) else None
            if file is None or file.content is None:
                raise _ApiError("file_not_found")
            file.title = entry.get("title") or file.name
            completed.append(file)
        for file in completed:
            file.completed = True
            file.channel = channel.id if channel else None
            file.thread_ts = thread_ts
            file.initial_comment = comment
        if channel is not None:
            msg = SlackMessage(
                channel=channel.id,
                ts=self.new_ts(),
                text=comment or "",
                user=self._bot()[0],
                bot_id=self._bot()[1],
                thread_ts=self._thread_root(channel.id, thread_ts) if thread_ts else None,
                files=[f.id for f in completed],
            )
            self._messages[channel.id][msg.ts] = msg
        return {"files": [self._file_json(f) for f in completed]}

    def _files_info(self, args: JSONDict) -> JSONDict:
        file_id = _opt_str(args, "file")
        file = self.files.get(file_id) if file_id else None
        if file is None or not file.completed:
            raise _ApiError("file_not_found")
        return {"file": self._file_json(file)}

    def add_user_file(self, name: str, *, mimetype: str, content: bytes) -> dict[str, Any]:
        """A file a person shares with a message; the event's ``files`` entry for it."""
        file = FakeFile(id=self._new_id("F"), name=name, length=len(content), content=content)
        file.completed = True
        self.files[file.id] = file
        self._mimetypes[file.id] = mimetype
        return {
            **self._file_json(file),
            "user": "UALICE",
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "url_private_download": f"{self.base_url}/files/{file.id}/{name}",
        }

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        """``url_private``: like Slack, a request without the bot token gets the HTML sign-in
        page with status 200, not an error."""
        file = self.files.get(request.match_info["file_id"])
        self.downloads.append(request.match_info["file_id"])
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        grant = self.grants.get(token)
        channel = file.channel if file is not None else None
        if (
            grant is None
            or grant.revoked
            or (channel is not None and not grant.covers(self.team_of(channel)))
        ):
            return web.Response(
                text="<html><body>Sign in to Slack</body></html>", content_type="text/html"
            )
        if file is None or file.content is None:
            return web.Response(status=404, text="Not Found")
        mimetype = self._mimetypes.get(file.id, "application/octet-stream")
        if self.download_chunk_bytes is None:
            return web.Response(body=file.content, content_type=mimetype)
        response = web.StreamResponse(headers={"Content-Type": mimetype})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(file.content), self.download_chunk_bytes):
            await asyncio.sleep(self.download_pause_s)
            await response.write(file.content[start : start + self.download_chunk_bytes])
        await response.write_eof()
        return response

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        """The ``upload_url`` from files.getUploadURLExternal: raw bytes or multipart."""
        file = self.files.get(request.match_info["file_id"])
        if file is None:
            return web.Response(status=404, text="Not Found")
        if request.content_type == "multipart/form-data":
            form = await request.post()
            content = b""
            for value in form.values():
                if isinstance(value, web.FileField):
                    content = value.file.read()
                    break
                content = value.encode() if isinstance(value, str) else bytes(value)
        else:
            content = await request.read()
        file.content = content
        return web.Response(text=f"OK - {len(content)}", content_type="text/plain")

    # ----------------------------------------------------------------------------------
    # Socket Mode

    @property
    def socket_connections(self) -> int:
        """Number of currently open Socket Mode websockets."""
        return sum(1 for ws in self._sockets if not ws.closed)

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        # autoping answers the client's "sdk-ping-pong:<t>" pings with matching pongs.
        ws = web.WebSocketResponse(autoping=True, timeout=2.0)
        await ws.prepare(request)
        self._sockets.append(ws)
        self._connections_opened += 1
        connection = self._connections_opened
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": self.socket_connections,
                    "debug_info": {
                        "host": "fake-slack",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
            )
            async for frame in ws:
                if frame.type == WSMsgType.TEXT and self._on_socket_text(frame.data):
                    self.acks_by_connection[connection] = (
                        self.acks_by_connection.get(connection, 0) + 1
                    )
        finally:
            self._sockets.remove(ws)
        return ws

    def _on_socket_text(self, data: str) -> bool:
        """Record an ack; whether the frame was one."""
        try:
            message = json.loads(data)
        except ValueError:
            return False
        if not isinstance(message, dict) or "envelope_id" not in message:
            return False
        self.socket_acks.append(message)
        future = self._pending_acks.pop(str(message["envelope_id"]), None)
        if future is not None and not future.done():
            future.set_result(message)
        return True

    async def send_socket_event(
        self,
        payload: dict[str, Any],
        *,
        envelope_type: str = "events_api",
        retry_attempt: int = 0,
        timeout: float = 5.0,
        retry_reason: str | None = None,
        ingest: bool = True,
    ) -> dict[str, Any]:
        """Push an envelope over the most recent open websocket and wait for its ack.

        Waits (within ``timeout``) for a connection if none is open yet.  With ``ingest``
        the message the event talks about is recorded first (see :meth:`ingest_event`), as
        it already exists in Slack when the event is delivered.  Returns the client's ack
        (``{"envelope_id": ...}``, possibly with ``payload``); raises
        :class:`SocketAckTimeout` if none arrives in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ws = await self._wait_for_socket(deadline)
        if ws is None:
            raise SocketAckTimeout(f"no Socket Mode connection opened within {timeout:g}s")
        envelope_id = str(uuid.uuid4())
        envelope: JSONDict = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": envelope_type,
            "accepts_response_payload": envelope_type != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason
            if retry_reason is not None
            else ("timeout" if retry_attempt else ""),
        }
        if ingest and envelope_type == "events_api":
            self.ingest_event(payload)
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending_acks[envelope_id] = future
        self.socket_envelopes.append(envelope)
        try:
            await ws.send_json(envelope)
            async with asyncio.timeout_at(deadline):
                return await future
        except TimeoutError:
            event = payload.get("event", {})
            kind = event.get("type") if isinstance(event, dict) else None
            raise SocketAckTimeout(
                f"no ack for {envelope_type} envelope {envelope_id} (event {kind!r}) "
                f"within {timeout:g}s; acks received so far: {len(self.socket_acks)}"
            ) from None
        finally:
            self._pending_acks.pop(envelope_id, None)

    async def _wait_for_socket(self, deadline: float) -> web.WebSocketResponse | None:
        loop = asyncio.get_running_loop()
        while True:
            open_sockets = [ws for ws in self._sockets if not ws.closed]
            if open_sockets and self.spread_socket_events:
                self._next_socket += 1
                return open_sockets[self._next_socket % len(open_sockets)]
            if open_sockets:
                return open_sockets[-1]
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(0.01)

    async def disconnect_sockets(self, reason: str = "refresh_requested") -> None:
        """Send Slack's ``disconnect`` message; the SDK client then reconnects by itself."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}}
        for ws in [ws for ws in self._sockets if not ws.closed]:
            with contextlib.suppress(ConnectionError):
                await ws.send_json(message)

    async def close_sockets(self) -> None:
        """Close every Socket Mode connection from the server side."""
        open_sockets = [ws for ws in self._sockets if not ws.closed]
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"server closing")
                for ws in open_sockets
            ),
            return_exceptions=True,
        )


def _long_secret() -> str:
    return "".join(uuid.uuid4().hex for _ in range(4))
