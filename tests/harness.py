"""The real bot, wired to the fakes, for end-to-end tests.

`BotUnderTest` runs the production start-up (`running_bot`) and HTTP routes in this process on
a free port, so each test talks to it over real HTTP with signed events while staying fast.
Tests that need a separate process (kill -9, two processes, settings errors) use
`BotProcess`, which runs `python -m bot`'s entry as a user would, in a process of its own
(forked with the third-party libraries already imported, `tests.warm_start`, unless `cold`).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_web_app
from bot.bootstrap import Bot, running_bot
from bot.live import THINKING_TEXT
from bot.settings import load_settings
from bot.store.models import Conversation, InboxMessage, Turn
from tests.fakes.events import (
    block_actions,
    channel_message,
    dm_message,
    event_envelope,
    mention,
    post_event,
    post_form,
    slash_command,
    view_submission,
)
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack, SlackMessage
from tests.modes import ORG_ID, SlackMode
from tests.warm_start import WarmProcess

SIGNING_SECRET = "test-signing-secret"
STATE_SECRET = "a-long-random-state-secret"
TOKEN_KEY = "QEcHbMB22-laOjPumiYHXpplIVHJulJI5VaD11f7N8w="
"""TOKEN_ENCRYPTION_KEYS of the bots under test in OAuth mode."""
ROOT = Path(__file__).resolve().parent.parent


def bot_env(
    *,
    slack: FakeSlack,
    openai: FakeOpenAI,
    database_url: str,
    assistant_api: str,
    slack_mode: SlackMode = SlackMode.TOKEN,
    **extra: str,
) -> dict[str, str]:
    env = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "OPENAI_API_KEY": openai.api_key,
        "OPENAI_BASE_URL": openai.base_url,
        "ASSISTANT_API": assistant_api,
        "OPENAI_MODEL": "gpt-test",
        "DATABASE_URL": database_url,
        "POLL_INITIAL_MS": "20",
        "POLL_MAX_MS": "100",
        "OPENAI_MAX_RETRIES": "2",
        "LEASE_S": "3",
        "LOG_LEVEL": "INFO",
    }
    if assistant_api == "threads":
        env["OPENAI_ASSISTANT_ID"] = "asst_test"
    if assistant_api == "chat":
        # "gpt-test" is no model the bot knows; a deployment of one states its window.
        env["CONTEXT_TOKENS"] = "32000"
    if slack_mode.oauth:
        del env["SLACK_BOT_TOKEN"]
        env.update(
            SLACK_CLIENT_ID=slack.client_id,
            SLACK_CLIENT_SECRET=slack.client_secret,
            SLACK_STATE_SECRET=STATE_SECRET,
            TOKEN_ENCRYPTION_KEYS=TOKEN_KEY,
        )
    env.update(extra)
    return env


RUN_STARTS = r"/v1/(threads/[^/]+/runs|responses|chat/completions)"
"""The OpenAI requests that start a run (threads), a response (responses) or a completion
(chat)."""


def is_finished(message: SlackMessage) -> bool:
    """Not a placeholder, and not a message still being streamed or edited live.

    A file the bot shared without a comment is finished too: Slack shows it with empty text.
    """
    if message.files and not message.text:
        return True
    return (
        bool(message.text)
        and message.text != THINKING_TEXT
        and not message.streaming
        and not message.text.endswith(" …")
    )


@dataclass
class Conversations:
    """Sends Slack events to a bot, the way Slack would, and reads what Slack shows."""

    events_url: str
    slack: FakeSlack
    openai: FakeOpenAI
    http: aiohttp.ClientSession
    statuses: list[int] = field(default_factory=list)
    enterprise_id: str | None = None
    """The fake workspace's organisation, when it is part of one (Enterprise Grid)."""
    org_wide: bool = False
    """Installed for the whole organisation: Slack's payloads say so."""

    @property
    def _grid(self) -> dict[str, Any]:
        return {"enterprise_id": self.enterprise_id, "is_enterprise_install": self.org_wide}

    async def deliver(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> int:
        body = event_envelope(event, event_id=event_id, team_id=self.slack.team_id, **self._grid)
        status, _, _ = await post_event(
            self.http, self.events_url, body, signing_secret=SIGNING_SECRET, retry_num=retry_num
        )
        self.statuses.append(status)
        return status

    def _say(self, channel: str, user: str, text: str, thread_ts: str | None) -> SlackMessage:
        return self.slack.add_message(channel, user=user, text=text, thread_ts=thread_ts)

    async def mention(
        self,
        text: str,
        *,
        user: str = "UALICE",
        channel: str = "C0001",
        thread_ts: str | None = None,
    ) -> SlackMessage:
        """A person writes `@bot text` in a channel (in a thread when thread_ts is given)."""
        full = f"<@{self.slack.bot_user_id}> {text}"
        message = self._say(channel, user, full, thread_ts)
        await self.deliver(
            mention(text=full, user=user, channel=channel, ts=message.ts, thread_ts=thread_ts)
        )
        return message

    async def reply(
        self, text: str, *, thread_ts: str, user: str = "UALICE", channel: str = "C0001"
    ) -> SlackMessage:
        """A person replies in a channel thread without mentioning the bot."""
        message = self._say(channel, user, text, thread_ts)
        await self.deliver(
            channel_message(
                text=text, user=user, channel=channel, ts=message.ts, thread_ts=thread_ts
            )
        )
        return message

    async def dm(
        self,
        text: str,
        *,
        user: str = "UALICE",
        channel: str = "D0001",
        thread_ts: str | None = None,
    ) -> SlackMessage:
        message = self._say(channel, user, text, thread_ts)
        await self.deliver(
            dm_message(text=text, user=user, channel=channel, ts=message.ts, thread_ts=thread_ts)
        )
        return message

    async def command(
        self, text: str, *, user: str = "UALICE", channel: str = "C0001"
    ) -> tuple[int, dict[str, Any]]:
        """A person types `/assistant text`; Slack shows them the ack's JSON body (ephemeral)."""
        fields = slash_command(
            text=text, user=user, channel=channel, team_id=self.slack.team_id, **self._grid
        )
        status, body = await post_form(
            self.http, self.events_url, fields, signing_secret=SIGNING_SECRET
        )
        return status, (json.loads(body) if body.startswith("{") else {})

    async def click(self, message: SlackMessage, action_id: str, *, user: str = "UALICE") -> int:
        """A person clicks the button `action_id` under a bot message."""
        for block in message.blocks or []:
            for element in block.get("elements") or []:
                if element.get("action_id") == action_id:
                    fields = block_actions(
                        user=user,
                        action_id=action_id,
                        value=str(element.get("value")),
                        channel=message.channel,
                        message={"ts": message.ts, "thread_ts": message.thread_ts},
                        trigger_id=self.slack.new_trigger_id(),
                        team_id=self.slack.team_id,
                        **self._grid,
                    )
                    status, _ = await post_form(
                        self.http, self.events_url, fields, signing_secret=SIGNING_SECRET
                    )
                    return status
        raise AssertionError(f"no button {action_id!r} under the message {message.ts}")

    async def submit_view(
        self, view: dict[str, Any], values: dict[str, Any], *, user: str = "UALICE"
    ) -> int:
        fields = view_submission(
            user=user, view=view, values=values, team_id=self.slack.team_id, **self._grid
        )
        status, _ = await post_form(
            self.http, self.events_url, fields, signing_secret=SIGNING_SECRET
        )
        return status

    def answers(self, channel: str, thread_ts: str) -> list[SlackMessage]:
        """The bot's finished messages in the thread (placeholders excluded)."""
        return [m for m in self.slack.bot_replies(channel, thread_ts) if is_finished(m)]

    async def wait_for_answers(
        self, channel: str, thread_ts: str, count: int = 1, timeout: float = 30.0
    ) -> list[SlackMessage]:
        def done() -> bool:
            replies = self.slack.bot_replies(channel, thread_ts)
            finished = [m for m in replies if is_finished(m)]
            return len(finished) >= count and len(finished) == len(replies)

        await self.slack.wait_for(done, timeout=timeout)
        return self.answers(channel, thread_ts)


async def install(site: Conversations, team: str) -> None:
    """An admin of `team` (a workspace, or an organisation for an org-wide install) opens the
    bot's install page, clicks Add to Slack, approves on Slack's consent page, and is sent
    back to the bot, which exchanges the code at oauth.v2.access and stores the install."""
    base = site.events_url.removesuffix("/slack/events")
    site.slack.redirect_uri = f"{base}/slack/oauth_redirect"  # the app's Redirect URL
    async with site.http.get(f"{base}/slack/install", params={"team": team}) as page:
        assert page.status == 200
        body = await page.text()
        cookie = page.headers["Set-Cookie"].split(";")[0]
    found = re.search(r'href="([^"]*oauth/v2/authorize[^"]*)"', body)
    assert found is not None, "no Add to Slack link on the install page"
    async with site.http.get(html.unescape(found.group(1)), allow_redirects=False) as consent:
        assert consent.status == 302
        back = consent.headers["Location"]
    async with site.http.get(back, headers={"Cookie": cookie}) as done:
        assert done.status == 200, await done.text()
        assert "is now in" in await done.text()


@dataclass
class BotUnderTest(Conversations):
    bot: Bot | None = None

    @property
    def assistant_api(self) -> str:
        assert self.bot is not None
        return self.bot.settings.assistant_api

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        env: Mapping[str, str],
        *,
        slack: FakeSlack,
        openai: FakeOpenAI,
        install_first: bool = False,
        slack_mode: SlackMode = SlackMode.OAUTH,
    ) -> AsyncIterator[BotUnderTest]:
        """The bot, serving HTTP. OAuth mode with `install_first`: before the test talks to
        it, the fake's workspace installs it through its pages (in `SlackMode.ORG`, its
        organisation installs it org-wide), and the single-workspace token stops working, so
        a call made without the installed token fails the test. Without `install_first` it
        answers only where an earlier run installed it."""
        org = slack_mode is SlackMode.ORG
        if org:
            slack.teams[slack.team_id].enterprise_id = ORG_ID
        settings = load_settings(env, dotenv_path=None)
        async with running_bot(settings) as bot, aiohttp.ClientSession() as http:
            runner = web.AppRunner(
                build_web_app(
                    bolt=bot.bolt,
                    settings=settings,
                    engine=bot.engine,
                    wakeups=bot.wakeups,
                )
            )
            await runner.setup()
            site = web.TCPSite(runner, host="127.0.0.1", port=0)
            await site.start()
            port = runner.addresses[0][1]
            dispatcher = asyncio.create_task(bot.service.run())
            under_test = cls(
                events_url=f"http://127.0.0.1:{port}/slack/events",
                slack=slack,
                openai=openai,
                http=http,
                bot=bot,
                enterprise_id=ORG_ID if org else None,
                org_wide=org,
            )
            try:
                if install_first:
                    slack.revoke(slack.bot_token)
                    await install(under_test, ORG_ID if org else slack.team_id)
                yield under_test
            finally:
                await runner.cleanup()
                await bot.service.shutdown()
                dispatcher.cancel()
                await asyncio.gather(dispatcher, return_exceptions=True)

    async def wait_for_answers(
        self, channel: str, thread_ts: str, count: int = 1, timeout: float = 30.0
    ) -> list[SlackMessage]:
        """As Slack shows them once the bot has nothing left in hand for the thread."""
        await super().wait_for_answers(channel, thread_ts, count, timeout)
        await self.idle(timeout)
        return self.answers(channel, thread_ts)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until every stored message is answered and no conversation is leased."""
        assert self.bot is not None
        await wait_until_idle(self.bot.engine, timeout)


async def wait_until_idle(engine: AsyncEngine, timeout: float = 30.0) -> None:
    """Until the database says nothing is left: every stored message answered (or refused),
    every turn done (or waiting for a person's approval), no conversation waiting for work."""
    counts = select(  # one statement: the bot shares SQLite's one connection with it
        select(func.count())
        .select_from(InboxMessage)
        .where(InboxMessage.turn_id.is_(None), InboxMessage.refused.is_(False))
        .scalar_subquery(),
        select(func.count())
        .select_from(Turn)
        .where(Turn.status.not_in(("done", "awaiting_approval")))
        .scalar_subquery(),
        select(func.count())
        .select_from(Conversation)
        .where(Conversation.needs_attention.is_(True))
        .scalar_subquery(),
    )
    deadline = time.monotonic() + timeout
    while True:
        async with engine.connect() as connection:
            pending, open_turns, busy = (await connection.execute(counts)).one()
        if not pending and not open_turns and not busy:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"bot not idle after {timeout}s: {pending} unassigned messages, "
                f"{open_turns} open turns, {busy} conversations needing attention"
            )
        await asyncio.sleep(0.02)


async def nothing_left(database_url: str, timeout: float = 40.0) -> None:
    """`wait_until_idle` for a bot in another process, through its DATABASE_URL."""
    from bot.settings import database_url as async_url
    from bot.store.db import create_engine

    engine = create_engine(async_url(database_url))
    try:
        await wait_until_idle(engine, timeout)
    finally:
        await engine.dispose()


PORTS_PER_WORKER = 1500
_FIRST_PORT = 20_000
"""Below Linux's ephemeral range (32768 on), where the ports of sockets bound to 0 (the fakes'
servers, every client connection) come from."""


def _worker_number() -> int:
    """0 for gw0 (or no xdist), 1 for gw1, …"""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


_ports = itertools.count(_FIRST_PORT + PORTS_PER_WORKER * _worker_number())


def free_port() -> int:
    """A free port no other test of this run is handed: each worker draws from a range of its
    own, and never the same port twice. A port the OS picks (bind to 0) can be picked again
    for another worker's bot while a killed bot waits to restart on it, and that test's
    requests would then reach the other test's bot."""
    for port in _ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("unreachable: the port counter is endless")


class BotProcess:
    """`python -m bot` in a process of its own, as a user (or a platform) runs it.

    By default the process is forked from a server that has already imported the third-party
    libraries (`tests.warm_start`); `cold=True` execs the interpreter, for tests about start-up
    itself."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        cwd: Path | None = None,
        port: int | None = None,
        cold: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))},
            **env,
            "PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
        }
        self.cwd = cwd or ROOT
        self.cold = cold
        self.process: subprocess.Popen[bytes] | WarmProcess | None = None
        name = f"bot-{self.port}-{uuid.uuid4().hex[:8]}.log"  # a restart may reuse the port
        self.log_path = self.cwd / name if cwd else Path("/tmp") / name

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def start(self) -> None:
        if not self.cold:
            self.log_path.write_bytes(b"")
            self.process = WarmProcess("bot", [], self.env, self.cwd, self.log_path)
            return
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot"], env=self.env, cwd=self.cwd, stdout=log, stderr=log
            )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"bot exited with {self.process.returncode}:\n{self.output()}"
                    )
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"bot not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
