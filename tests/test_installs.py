"""Installing anywhere (issue 14): many workspaces by OAuth, each with its own token and its
own data, Enterprise Grid org-wide installs, token rotation, and uninstalling.

The bot runs in OAuth mode (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, SLACK_STATE_SECRET, no
SLACK_BOT_TOKEN); workspaces are installed through its own pages, `GET /slack/install` and
`GET /slack/oauth_redirect`, with the fake Slack's consent page in between, as a browser
would go through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.crypto import TokenCipher
from bot.installations import NotInstalled, TeamKey, Workspaces, authorize_url, uninstalled
from bot.replies import FEEDBACK_ACTION_ID
from bot.settings import SettingsError, load_settings
from bot.slack.client import make_web_client
from bot.store.db import create_engine, migrate
from bot.store.inbox import NewMessage
from bot.store.models import Conversation, Feedback, InboxMessage, Turn
from bot.store.repository import Store
from tests.fakes.events import (
    block_actions,
    event_envelope,
    mention,
    post_event,
    post_form,
    slash_command,
)
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack, SlackCall
from tests.harness import (
    SIGNING_SECRET,
    STATE_SECRET,
    TOKEN_KEY,
    BotProcess,
    BotUnderTest,
    Conversations,
    SlackMode,
    bot_env,
    install,
    is_finished,
)

# Calls that act in a channel: each must carry a token of the channel's own workspace.
CHANNEL_METHODS = {
    "chat.postMessage",
    "chat.update",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "conversations.replies",
}


def oauth_env(
    slack: FakeSlack, openai: FakeOpenAI, database_url: str, **extra: str
) -> dict[str, str]:
    return bot_env(
        slack=slack,
        openai=openai,
        database_url=database_url,
        assistant_api="responses",
        slack_mode=SlackMode.OAUTH,
        **extra,
    )


@contextlib.asynccontextmanager
async def oauth_bot(
    slack: FakeSlack, openai: FakeOpenAI, database_url: str, **extra: str
) -> AsyncIterator[BotUnderTest]:
    env = oauth_env(slack, openai, database_url, **extra)
    async with BotUnderTest.running(env, slack=slack, openai=openai) as bot:
        yield bot


async def mention_in(
    bot: Conversations,
    text: str,
    *,
    team: str,
    channel: str,
    user: str = "UALICE",
    enterprise: str | None = None,
    org_wide: bool = False,
) -> str:
    """A person in workspace `team` mentions the bot in `channel`; the thread's ts."""
    slack = bot.slack
    full = f"<@UBOT> {text}"
    message = slack.add_message(channel, user=user, text=full)
    event = mention(text=full, user=user, channel=channel, ts=message.ts, team=team)
    body = event_envelope(
        event, team_id=team, enterprise_id=enterprise, is_enterprise_install=org_wide
    )
    status, _, _ = await post_event(bot.http, bot.events_url, body, signing_secret=SIGNING_SECRET)
    assert status == 200
    return message.ts


def channel_calls(slack: FakeSlack, channel: str) -> list[SlackCall]:
    return [
        call
        for call in slack.calls
        if call.method in CHANNEL_METHODS and call.args.get("channel") == channel
    ]


async def two_teams(slack: FakeSlack) -> None:
    slack.add_team("T0002", name="Second")
    slack.add_channel("C0002", team_id="T0002")
    slack.add_user("UCAROL", display_name="Carol")


ORG_CHANNELS = {"T0101": "C0101", "T0102": "C0102"}


def an_org(slack: FakeSlack) -> None:
    """Organisation E0001 with two workspaces, a channel in each."""
    for team, channel in ORG_CHANNELS.items():
        slack.add_team(team, enterprise_id="E0001")
        slack.add_channel(channel, team_id=team)


async def stored_messages(bot: BotUnderTest) -> int:
    assert bot.bot is not None
    async with bot.bot.engine.connect() as connection:
        return len((await connection.execute(select(InboxMessage.id))).all())


# Settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"SLACK_CLIENT_ID": "1.2"}, "SLACK_CLIENT_SECRET, SLACK_STATE_SECRET not set"),
        (
            {"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s"},
            "SLACK_STATE_SECRET not set",
        ),
        (
            {"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s", "SLACK_STATE_SECRET": "x"},
            "SLACK_STATE_SECRET must be at least 16",
        ),
        (
            {
                "SLACK_CLIENT_ID": "1.2",
                "SLACK_CLIENT_SECRET": "s",
                "SLACK_STATE_SECRET": STATE_SECRET,
                "SLACK_BOT_TOKEN": "xoxb-1",
            },
            "SLACK_BOT_TOKEN and SLACK_CLIENT_ID are both set",
        ),
        (
            {
                "SLACK_CLIENT_ID": "1.2",
                "SLACK_CLIENT_SECRET": "s",
                "SLACK_STATE_SECRET": STATE_SECRET,
                "SLACK_APP_TOKEN": "xapp-1",
            },
            "OAuth installs need HTTP mode",
        ),
    ],
)
def test_partial_or_conflicting_oauth_settings_are_one_line_errors(
    env: dict[str, str], error: str
) -> None:
    base = {"SLACK_SIGNING_SECRET": "s", "OPENAI_API_KEY": "k"}
    with pytest.raises(SettingsError) as raised:
        load_settings({**base, **env}, dotenv_path=None)
    assert error in str(raised.value)
    assert "\n" not in str(raised.value)


def test_oauth_settings_need_no_bot_token() -> None:
    settings = load_settings(
        {
            "SLACK_CLIENT_ID": "1.2",
            "SLACK_CLIENT_SECRET": "s",
            "SLACK_STATE_SECRET": STATE_SECRET,
            "SLACK_SIGNING_SECRET": "s",
            "OPENAI_API_KEY": "k",
            "TOKEN_ENCRYPTION_KEYS": TOKEN_KEY,
        },
        dotenv_path=None,
    )
    assert settings.oauth and settings.slack_bot_token == ""
    assert "chat:write" in settings.slack_scopes


# Two workspaces ---------------------------------------------------------------------------


async def test_two_workspaces_installed_by_oauth_are_each_answered_with_their_own_token(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    await two_teams(slack)
    async with oauth_bot(slack, openai_fake, database_url) as bot:
        await install(bot, "T0001")
        await install(bot, "T0002")
        first = await mention_in(bot, "hello from one", team="T0001", channel="C0001")
        second = await mention_in(
            bot, "hello from two", team="T0002", channel="C0002", user="UCAROL"
        )
        await bot.wait_for_answers("C0001", first)
        await bot.wait_for_answers("C0002", second)

        ones, twos = slack.tokens_of("T0001") - {slack.bot_token}, slack.tokens_of("T0002")
        assert len(ones) == 1 and len(twos) == 1 and ones != twos
        for channel, tokens in (("C0001", ones), ("C0002", twos)):
            calls = channel_calls(slack, channel)
            assert calls and {call.token for call in calls} == tokens
            assert all(call.ok for call in calls)
        # Streaming names the workspace the answer is for.
        streams = slack.calls_to("chat.startStream")
        assert {(c.args["channel"], c.args["recipient_team_id"]) for c in streams} == {
            ("C0001", "T0001"),
            ("C0002", "T0002"),
        }
        assert bot.bot is not None
        async with bot.bot.engine.connect() as connection:
            rows = (
                await connection.execute(select(Conversation.team_id, Conversation.channel_id))
            ).all()
        assert sorted(rows) == [("T0001", "C0001"), ("T0002", "C0002")]


async def test_an_event_from_a_workspace_that_never_installed_is_not_stored(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    await two_teams(slack)
    async with oauth_bot(slack, openai_fake, database_url) as bot:
        await install(bot, "T0001")
        slack.add_message("C0002", user="UCAROL", text="<@UBOT> hi")
        full = "<@UBOT> hi"
        event = mention(text=full, user="UCAROL", channel="C0002", ts=slack.new_ts(), team="T0002")
        await post_event(
            bot.http,
            bot.events_url,
            event_envelope(event, team_id="T0002"),
            signing_secret=SIGNING_SECRET,
        )
        assert bot.bot is not None
        async with bot.bot.engine.connect() as connection:
            stored = (await connection.execute(select(InboxMessage.id))).all()
        assert stored == []


async def test_a_forged_or_reused_state_is_refused(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    async with oauth_bot(slack, openai_fake, database_url) as bot:
        base = bot.events_url.removesuffix("/slack/events")
        async with bot.http.get(f"{base}/slack/install") as page:
            cookie = page.headers["Set-Cookie"].split(";")[0]
            state = cookie.split("=", 1)[1]
        forged = state[:-1] + ("0" if state[-1] != "0" else "1")

        async def come_back(value: str) -> int:
            async with bot.http.get(
                f"{base}/slack/oauth_redirect",
                params={"code": "not-a-code", "state": value},
                headers={"Cookie": f"slack-app-oauth-state={value}"},
            ) as response:
                return response.status

        assert await come_back(forged) == 401
        assert slack.calls_to("oauth.v2.access") == []  # refused before any exchange
        assert await come_back(state) == 401  # a good state, but Slack refuses the code
        assert len(slack.calls_to("oauth.v2.access")) == 1
        assert await come_back(state) == 401  # each state is good once
        assert len(slack.calls_to("oauth.v2.access")) == 1


# Uninstall --------------------------------------------------------------------------------


async def test_uninstall_stops_that_workspace_and_leaves_the_other_answering(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    await two_teams(slack)
    async with oauth_bot(slack, openai_fake, database_url, DELETE_DATA_ON_UNINSTALL="true") as bot:
        await install(bot, "T0001")
        await install(bot, "T0002")
        done = await mention_in(bot, "before", team="T0002", channel="C0002", user="UCAROL")
        await bot.wait_for_answers("C0002", done)
        # A question is being answered slowly when the workspace removes the app.
        openai_fake.run_s = 1.5
        pending = await mention_in(bot, "slow one", team="T0002", channel="C0002", user="UCAROL")
        await slack.wait_for(lambda: bool(slack.bot_replies("C0002", pending)), timeout=10)
        slack.uninstall("T0002")
        body = event_envelope({"type": "app_uninstalled"}, team_id="T0002")
        status, _, _ = await post_event(
            bot.http, bot.events_url, body, signing_secret=SIGNING_SECRET
        )
        assert status == 200
        uninstalled_at = len(slack.calls)
        await bot.idle()
        openai_fake.run_s = 0.2
        assert bot.bot is not None
        async with bot.bot.engine.connect() as connection:
            teams = set((await connection.scalars(select(Conversation.team_id))).all())
            open_turns = (
                await connection.execute(select(Turn.id).where(Turn.status != "done"))
            ).all()
        assert "T0002" not in teams and open_turns == []
        # Nothing more was shown in the removed workspace, and the other one still works.
        assert not [
            c for c in slack.calls[uninstalled_at:] if c.args.get("channel") == "C0002" and c.ok
        ]
        assert not [m for m in slack.bot_replies("C0002", pending) if "slow one" in m.text]
        one = await mention_in(bot, "still here?", team="T0001", channel="C0001")
        [answer] = await bot.wait_for_answers("C0001", one)
        assert answer.text


# Enterprise Grid --------------------------------------------------------------------------


async def test_an_org_wide_install_answers_in_every_workspace_of_the_org(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    slack.add_team("T0101", enterprise_id="E0001")
    slack.add_team("T0102", enterprise_id="E0001")
    slack.add_channel("C0101", team_id="T0101")
    slack.add_channel("C0102", team_id="T0102")
    async with oauth_bot(slack, openai_fake, database_url) as bot:
        await install(bot, "E0001")
        threads = {}
        for team, channel in (("T0101", "C0101"), ("T0102", "C0102")):
            threads[channel] = await mention_in(
                bot,
                f"hi from {team}",
                team=team,
                channel=channel,
                enterprise="E0001",
                org_wide=True,
            )
        for channel, ts in threads.items():
            await bot.wait_for_answers(channel, ts)
        [org_token] = slack.tokens_of("T0101")
        assert slack.tokens_of("T0102") == {org_token}
        for channel in threads:
            calls = channel_calls(slack, channel)
            assert calls and {c.token for c in calls} == {org_token}
        streams = slack.calls_to("chat.startStream")
        assert {(c.args["channel"], c.args["recipient_team_id"]) for c in streams} == {
            ("C0101", "T0101"),
            ("C0102", "T0102"),
        }


ORG_WIDE_GOODBYES = {
    "app_uninstalled": {"type": "app_uninstalled"},
    "tokens_revoked": {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["WBOTE0001"]}},
}


def org_goodbye(goodbye: str, *, authorizations: bool) -> dict[str, Any]:
    """The event an organisation's removal of the app sends. Slack's own examples of
    `app_uninstalled` carry no `authorizations`; then only the envelope names the org, and
    its `team_id` may be one of the org's workspaces."""
    body = event_envelope(
        ORG_WIDE_GOODBYES[goodbye],
        team_id="E0001" if authorizations else "T0101",
        enterprise_id="E0001",
        is_enterprise_install=True,
    )
    if not authorizations:
        del body["authorizations"]
    return body


@pytest.mark.parametrize(
    ("database_url", "goodbye", "authorizations"),
    [
        ("sqlite", "app_uninstalled", True),
        ("postgres", "tokens_revoked", True),
        ("sqlite", "app_uninstalled", False),
    ],
    indirect=["database_url"],
)
async def test_an_org_wide_uninstall_stops_every_workspace_of_the_org_and_no_other(
    slack: FakeSlack,
    openai_fake: FakeOpenAI,
    database_url: str,
    goodbye: str,
    authorizations: bool,
) -> None:
    an_org(slack)
    await two_teams(slack)
    async with oauth_bot(slack, openai_fake, database_url) as bot:
        await install(bot, "E0001")
        await install(bot, "T0002")
        done = await mention_in(
            bot, "before", team="T0101", channel="C0101", enterprise="E0001", org_wide=True
        )
        await bot.wait_for_answers("C0101", done)
        # A question in the org's other workspace is being answered when the org removes the app.
        openai_fake.run_s = 1.5
        pending = await mention_in(
            bot, "slow one", team="T0102", channel="C0102", enterprise="E0001", org_wide=True
        )
        await slack.wait_for(lambda: bool(slack.bot_replies("C0102", pending)), timeout=10)
        slack.uninstall("E0001")
        body = org_goodbye(goodbye, authorizations=authorizations)
        status, _, _ = await post_event(
            bot.http, bot.events_url, body, signing_secret=SIGNING_SECRET
        )
        assert status == 200
        uninstalled_at = len(slack.calls)
        await bot.idle()
        openai_fake.run_s = 0.0
        assert not [m for m in slack.bot_replies("C0102", pending) if "slow one" in m.text]

        # Asked again in either workspace of the org: nothing is stored, nothing is shown.
        before = await stored_messages(bot)
        for team, channel in ORG_CHANNELS.items():
            await mention_in(
                bot, "anyone there?", team=team, channel=channel, enterprise="E0001", org_wide=True
            )
        # The workspace installed on its own still answers.
        other = await mention_in(bot, "still here?", team="T0002", channel="C0002", user="UCAROL")
        [answer] = await bot.wait_for_answers("C0002", other)
        assert answer.text and await stored_messages(bot) == before + 1
        assert not [
            c
            for c in slack.calls[uninstalled_at:]
            if c.args.get("channel") in ORG_CHANNELS.values() and c.ok
        ]
        assert bot.bot is not None and bot.bot.workspaces is not None
        store = bot.bot.workspaces.store
        assert (
            await store.async_find_bot(
                enterprise_id="E0001", team_id=None, is_enterprise_install=True
            )
            is None
        )
        assert await store.async_find_bot(enterprise_id=None, team_id="T0002") is not None


@pytest.mark.parametrize(
    ("team_id", "enterprise_id", "org_wide", "named"),
    [
        ("T0002", None, False, TeamKey("T0002")),
        ("T0101", "E0001", False, TeamKey("T0101", "E0001")),
        (None, "E0001", True, TeamKey("", "E0001")),
        ("T0101", "E0001", True, TeamKey("", "E0001")),
        ("E0001", "E0001", False, TeamKey("", "E0001")),
        ("E0001", None, False, TeamKey("", "E0001")),
        (None, "E0001", False, TeamKey("", "E0001")),
    ],
)
def test_which_installation_an_uninstall_names(
    team_id: str | None, enterprise_id: str | None, org_wide: bool, named: TeamKey
) -> None:
    assert uninstalled(team_id=team_id, enterprise_id=enterprise_id, org_wide=org_wide) == named


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_workspace_named_without_its_org_is_found_by_team_then_by_its_org(
    slack: FakeSlack, database_url: str
) -> None:
    """Stored conversations and some payloads name the workspace only. The lookup finds the
    workspace's own install whatever its org, then the org-wide install of the org the
    workspace is known to belong to (from a lookup naming both, or a stored conversation);
    an org-wide removal spares the org's workspaces that installed the bot on their own."""
    from bot.settings import database_url as async_url

    an_org(slack)
    slack.add_team("T0103", enterprise_id="E0001")
    await two_teams(slack)
    engine = create_engine(async_url(database_url))
    await migrate(engine)

    def workspaces() -> Workspaces:  # a process of its own: nothing learned yet
        return Workspaces(
            engine,
            client_id=slack.client_id,
            client_secret=slack.client_secret,
            make_client=lambda token: make_web_client(token=token, base_url=slack.api_url),
            cipher=TokenCipher([TOKEN_KEY]),
        )

    try:
        first = workspaces()
        for target in ("E0001", "T0103", "T0002"):
            await store_install(first, slack, target)
        [org_token] = slack.tokens_of("T0101")
        [own_token] = slack.tokens_of("T0103") - {org_token}
        assert (await first.auth_for(TeamKey("T0103"))).token == own_token
        assert (await first.auth_for(TeamKey("T0002"))).token in slack.tokens_of("T0002")
        with pytest.raises(NotInstalled):  # nothing says which org T0101 is in
            await first.auth_for(TeamKey("T0101"))
        # Once named with its org, the workspace is known to be the org's.
        assert (await first.auth_for(TeamKey("T0102", "E0001"))).token == org_token
        assert (await first.auth_for(TeamKey("T0102"))).token == org_token
        # Another process learns it from a conversation stored from an event naming both.
        store = Store(engine)
        for team in ("T0101", "T0103"):
            channel = ORG_CHANNELS.get(team, "C0103")
            message = NewMessage(team, channel, "1.0", "1.0", "UALICE", "hi", enterprise_id="E0001")
            await store.inbox.record_message(message)
        assert (await workspaces().auth_for(TeamKey("T0101"))).token == org_token

        # The org removes its org-wide install: its workspaces stop, T0103 (own install) not.
        await first.remove(TeamKey("", "E0001"), delete_data=False)
        for team in ("T0101", "T0102"):
            with pytest.raises(NotInstalled):
                await first.auth_for(TeamKey(team))
        assert (await first.auth_for(TeamKey("T0103"))).token == own_token
        async with engine.connect() as connection:
            refused = dict(
                (await connection.execute(select(InboxMessage.team_id, InboxMessage.refused)))
                .tuples()
                .all()
            )
        assert refused == {"T0101": True, "T0103": False}
    finally:
        await engine.dispose()


async def test_clicks_and_commands_naming_only_an_org_workspace_are_served(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    """An org-wide install; a button click and a slash command whose payloads carry the
    workspace but not its organisation are still authorized and answered with the org's
    token."""
    an_org(slack)
    async with oauth_bot(slack, openai_fake, database_url) as bot:
        await install(bot, "E0001")
        ts = await mention_in(
            bot, "hello", team="T0101", channel="C0101", enterprise="E0001", org_wide=True
        )
        [answer] = await bot.wait_for_answers("C0101", ts)
        [org_token] = slack.tokens_of("T0101")
        up = next(
            element
            for block in answer.blocks or []
            for element in block.get("elements") or []
            if element.get("action_id") == FEEDBACK_ACTION_ID["up"]
        )
        fields = block_actions(
            user="UALICE",
            action_id=FEEDBACK_ACTION_ID["up"],
            value=str(up["value"]),
            channel="C0101",
            message={"ts": answer.ts, "thread_ts": answer.thread_ts},
            trigger_id=slack.new_trigger_id(),
            team_id="T0101",
        )
        status, _ = await post_form(bot.http, bot.events_url, fields, signing_secret=SIGNING_SECRET)
        assert status == 200
        await slack.wait_for(lambda: any(e.channel == "C0101" for e in slack.ephemerals))
        [thanks] = slack.calls_to("chat.postEphemeral")
        assert thanks.token == org_token and thanks.ok
        assert bot.bot is not None
        async with bot.bot.engine.connect() as connection:
            assert (await connection.execute(select(Feedback.value))).scalars().all() == ["up"]

        command = slash_command(text="show", user="UALICE", channel="C0101", team_id="T0101")
        status, body = await post_form(
            bot.http, bot.events_url, command, signing_secret=SIGNING_SECRET
        )
        assert status == 200
        reply = json.loads(body)
        assert "C0101" in reply["text"] and "install" not in reply["text"].lower()


# Token rotation ---------------------------------------------------------------------------


async def test_an_expiring_token_is_refreshed_before_expiry_while_answers_continue(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    slack.token_rotation = True
    # The installed token lasts two hours and three seconds: three seconds after the install
    # it enters the refresh window (two hours before expiry, by default) while still valid.
    slack.token_lifetime_s = 7200 + 3
    async with oauth_bot(slack, openai_fake, database_url) as bot:
        await install(bot, "T0001")
        [first_token] = slack.tokens_of("T0001") - {slack.bot_token}
        expires_at = slack.grants[first_token].expires_at
        assert expires_at is not None
        window_opens = expires_at - 7200  # wall clock
        slack.token_lifetime_s = 43_200  # refreshed tokens last the usual 12 hours
        ts = await mention_in(bot, "one", team="T0001", channel="C0001")
        await bot.wait_for_answers("C0001", ts)
        await slack.wait_for(lambda: time.time() > window_opens + 0.5, timeout=10)
        ts = await mention_in(bot, "two", team="T0001", channel="C0001")
        await bot.wait_for_answers("C0001", ts)
        [refresh] = slack.refreshes()
        # Refreshed inside the window (Slack gives lifetimes in whole seconds, so the bot's
        # idea of the expiry may be up to two seconds early), and well before the token expired.
        wall = refresh.at + (time.time() - time.monotonic())
        assert window_opens - 2.1 <= wall < expires_at - 7000
        new_tokens = slack.tokens_of("T0001") - {slack.bot_token, first_token}
        assert len(new_tokens) == 1
        # The second answer (streamed: two calls) goes out with the refreshed token.
        assert {c.token for c in channel_calls(slack, "C0001")[-2:]} == new_tokens
        assert all(c.error != "token_expired" for c in slack.calls)


async def test_two_processes_refreshing_at_once_refresh_once_and_share_the_token(
    slack: FakeSlack, database_url: str
) -> None:
    """Two bot processes (two engines on one database) find the same token about to expire
    at the same moment: one oauth.v2.access refresh, and both use the new token."""
    from bot.settings import database_url as async_url

    slack.token_rotation = True
    url = async_url(database_url)
    # Both processes' clocks say the token (good for 12 hours) expires in five minutes.
    later = slack.token_lifetime_s - 300
    engines = [create_engine(url), create_engine(url)]
    await migrate(engines[0])
    try:
        made = [
            Workspaces(
                engine,
                client_id=slack.client_id,
                client_secret=slack.client_secret,
                make_client=lambda token: make_web_client(token=token, base_url=slack.api_url),
                clock=lambda: time.time() + later,
                cipher=TokenCipher([TOKEN_KEY]),
            )
            for engine in engines
        ]
        await store_install(made[0], slack, "T0001")
        key = TeamKey("T0001")
        first, second = await asyncio.gather(made[0].auth_for(key), made[1].auth_for(key))
        assert len(slack.refreshes()) == 1
        assert first.token == second.token
        assert slack.grants[first.token].expires_at is not None
        assert slack.grants[first.token].expires_at > time.time() + 3600  # type: ignore[operator]
        # And the token works.
        assert (await first.client.auth_test())["ok"]
    finally:
        for engine in engines:
            await engine.dispose()


async def store_install(workspaces: Workspaces, slack: FakeSlack, team: str) -> None:
    """An install as the OAuth flow stores it (the code exchanged at the fake)."""
    from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
    from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings

    flow = AsyncOAuthFlow(
        client=make_web_client(token="", base_url=slack.api_url),
        settings=AsyncOAuthSettings(
            client_id=slack.client_id,
            client_secret=slack.client_secret,
            scopes=["chat:write"],
            user_scopes=[],
            installation_store=workspaces.store,
        ),
    )
    code = f"code-for-{team}"
    # As the consent page does: a workspace (of its org, if any), or an org-wide install.
    slack._codes[code] = (
        (team, slack.teams[team].enterprise_id) if team in slack.teams else (None, team)
    )
    installation = await flow.run_installation(code)
    assert installation is not None
    await workspaces.store.async_save(installation)


async def test_one_workspace_cannot_vote_on_or_see_another_workspaces_answers(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    await two_teams(slack)
    slack.add_channel("D0002", team_id="T0002")
    async with oauth_bot(slack, openai_fake, database_url, ADMIN_USER_IDS="UCAROL") as bot:
        await install(bot, "T0001")
        await install(bot, "T0002")
        ts = await mention_in(bot, "hello", team="T0001", channel="C0001")
        [answer] = await bot.wait_for_answers("C0001", ts)
        up = next(
            element
            for block in answer.blocks or []
            for element in block.get("elements") or []
            if element.get("action_id") == FEEDBACK_ACTION_ID["up"]
        )

        async def click(team: str, user: str) -> None:
            fields = block_actions(
                user=user,
                action_id=FEEDBACK_ACTION_ID["up"],
                value=str(up["value"]),
                channel="C0001",
                message={"ts": answer.ts, "thread_ts": answer.thread_ts},
                trigger_id=slack.new_trigger_id(),
                team_id=team,
            )
            status, _ = await post_form(
                bot.http, bot.events_url, fields, signing_secret=SIGNING_SECRET
            )
            assert status == 200

        await click("T0002", "UCAROL")  # a forged click from the other workspace
        assert bot.bot is not None
        async with bot.bot.engine.connect() as connection:
            assert (await connection.execute(select(Feedback.id))).all() == []
        await click("T0001", "UALICE")
        async with bot.bot.engine.connect() as connection:
            assert len((await connection.execute(select(Feedback.id))).all()) == 1
        # The other workspace's admin sees none of it on their Home tab.
        body = event_envelope(
            {"type": "app_home_opened", "user": "UCAROL", "channel": "D0002", "tab": "home"},
            team_id="T0002",
        )
        status, _, _ = await post_event(
            bot.http, bot.events_url, body, signing_secret=SIGNING_SECRET
        )
        assert status == 200
        shown = json.dumps(slack.home_views["UCAROL"], ensure_ascii=False)
        assert "👍 0" in shown and "C0001" not in shown


@pytest.mark.parametrize(
    ("api_url", "consent"),
    [
        ("https://slack.com/api/", "https://slack.com/oauth/v2/authorize"),
        ("https://slack-gov.com/api/", "https://slack-gov.com/oauth/v2/authorize"),
        ("http://127.0.0.1:8080/api/", "http://127.0.0.1:8080/oauth/v2/authorize"),
    ],
)
def test_the_consent_page_sits_beside_the_web_api(api_url: str, consent: str) -> None:
    assert authorize_url(api_url) == consent


async def test_python_m_bot_runs_in_oauth_mode(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    """The real entry point: started with the OAuth settings and no bot token, it serves the
    install pages, answers the workspace it was installed in, and stops cleanly."""
    env = oauth_env(slack, openai_fake, f"sqlite:///{tmp_path}/bot.db")
    process = BotProcess(env, cold=True)
    process.start()
    try:
        await process.wait_ready()
        async with aiohttp.ClientSession() as http:
            site = Conversations(process.events_url, slack, openai_fake, http)
            await install(site, "T0001")
            ts = await mention_in(site, "hello", team="T0001", channel="C0001")
            await slack.wait_for(
                lambda: any(is_finished(m) for m in slack.bot_replies("C0001", ts)), timeout=20
            )
        assert process.terminate() == 0
    finally:
        process.stop()
