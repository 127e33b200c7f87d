"""Secrets and data (issue 17): what the bot stores, logs and deletes, and how long it waits
for a Slack that does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import preflight
from bot.admin.home_view import REASON_ACTION, REASON_BLOCK
from bot.assistants.base import ApprovalRequest
from bot.bootstrap import running_bot
from bot.crypto import TokenCipher
from bot.escape import escape_mrkdwn
from bot.installations import SignedStateStore
from bot.preflight import StartupError
from bot.redact import redact
from bot.retention import purge
from bot.settings import SettingsError, load_settings
from bot.settings import database_url as async_url
from bot.slack import client as slack_client
from bot.store.db import create_engine, migrate
from bot.store.deletion_models import RemoteDeletion
from bot.store.models import InboxMessage
from bot.store.repository import Store
from bot.tools.approvals import approval_blocks
from tests.conftest import BotFactory
from tests.fakes.events import event_envelope, mention, post_event
from tests.fakes.mcp_server import FakeMcpServer
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
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
from tests.test_process import refused_start
from tests.test_tools import servers_on


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections, reads what is sent, and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()


@pytest.fixture
async def mcp_server() -> AsyncIterator[FakeMcpServer]:
    server = FakeMcpServer(token=MCP_TOKEN)
    await server.start()
    yield server
    await server.stop()


# A Slack that never answers --------------------------------------------------------------


async def test_a_slack_that_never_answers_stops_the_start_within_the_timeout(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start in this process (`refused_start`), with Slack's call timeout (15 s, not a
    setting) cut to 1 s rather than waited out."""
    monkeypatch.setattr(slack_client, "SLACK_TIMEOUT_S", 1)
    monkeypatch.setattr(preflight, "SLACK_TIMEOUT_S", 1)
    async with silent_server() as url:
        env = bot_env(
            slack=slack,
            openai=openai_fake,
            database_url=f"sqlite:///{tmp_path}/b.db",
            assistant_api="responses",
            SLACK_API_URL=f"{url}/api/",
        )
        started = time.monotonic()
        line = await refused_start(env)
    assert time.monotonic() - started < 10
    assert line == f"bot: cannot reach Slack at SLACK_API_URL {url}/api/ (no answer within 1 s)"


# Someone's text shown to someone else ----------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("plain words", "plain words"),
        ("<!channel> look", "&lt;!channel&gt; look"),
        ("<!here|here>", "&lt;!here|here&gt;"),
        ("ping <@U0ADMIN>", "ping &lt;@U0ADMIN&gt;"),
        ("<https://evil.example|your bank>", "&lt;https://evil.example|your bank&gt;"),
        ("fish & chips", "fish &amp; chips"),
        ("already &amp; escaped", "already &amp;amp; escaped"),
        ("a -> b <- c", "a -&gt; b &lt;- c"),
        ("*bold* _it_ `code`", "*bold* _it_ `code`"),
    ],
)
def test_text_shown_to_others_is_escaped(typed: str, shown: str) -> None:
    assert escape_mrkdwn(typed) == shown


def test_tool_arguments_on_an_approval_card_cannot_ping() -> None:
    """The model writes a tool call's arguments; the asker's channel sees the card."""
    request = ApprovalRequest(
        call_id="c1", server="orders", tool="refund", arguments='{"note": "<!channel> & co"}'
    )
    blocks = approval_blocks(request, requester="UALICE", approval_id=1)
    shown = json.dumps(blocks)
    assert "&lt;!channel&gt; &amp; co" in shown and "<!channel>" not in shown


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_thumbs_down_reason_cannot_ping_or_link_in_the_admin_home_tab(
    slack: FakeSlack, make_bot: BotFactory
) -> None:
    slack.add_user("UADMIN", display_name="Ada", is_admin=True)
    reason = "<!channel> wrong, see <https://evil.example|the docs> & <@UADMIN>"
    async with make_bot() as bot:
        question = await bot.mention("what is 2+2?")
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
        assert await bot.click(answer, "feedback_down", user="UBOB") == 200
        await slack.wait_for(lambda: len(slack.opened_views) == 1)
        (form,) = slack.opened_views
        values = {REASON_BLOCK: {REASON_ACTION: {"type": "plain_text_input", "value": reason}}}
        assert await bot.submit_view(form, values, user="UBOB") == 200
        await bot.deliver({"type": "app_home_opened", "user": "UADMIN", "tab": "home"})
        await slack.wait_for(lambda: "UADMIN" in slack.home_views)
    texts = [
        block["text"]["text"]
        for block in slack.home_views["UADMIN"]["blocks"]
        if block.get("text", {}).get("type") == "mrkdwn"
    ]
    [shown] = [text for text in texts if "👎 reasons" in text]
    assert (
        "&lt;!channel&gt; wrong, see &lt;https://evil.example|the docs&gt; &amp; &lt;@UADMIN&gt;"
        in shown
    )
    assert "<!channel>" not in shown and "<https://" not in shown and "<@UADMIN>" not in shown


# OAuth states ----------------------------------------------------------------------------

STATES = sa.table("slack_oauth_states", sa.column("id"), sa.column("state"), sa.column("expire_at"))


async def count_states(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(STATES)) or 0)


async def test_expired_states_are_deleted_when_the_install_page_is_opened(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=database_url,
        assistant_api="responses",
        slack_mode=SlackMode.OAUTH,
    )
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        assert bot.bot is not None
        engine = bot.bot.engine
        an_hour_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
        async with engine.begin() as connection:
            await connection.execute(
                sa.insert(STATES),
                [{"state": f"old-{n}", "expire_at": an_hour_ago} for n in range(50)],
            )
        base = bot.events_url.removesuffix("/slack/events")
        async with bot.http.get(f"{base}/slack/install") as page:
            assert page.status == 200
        assert await count_states(engine) == 1


async def test_outstanding_states_are_capped_oldest_first(database_url: str) -> None:
    engine = create_engine(async_url(database_url))
    await migrate(engine)
    try:
        states = SignedStateStore(engine, secret=STATE_SECRET, keep=5)
        issued = [await states.async_issue() for _ in range(8)]
        assert await count_states(engine) == 5
        assert not await states.async_consume(issued[2])  # among the oldest: gone
        assert await states.async_consume(issued[-1])
        assert await states.async_consume(issued[3])
    finally:
        await engine.dispose()


# Tokens at rest --------------------------------------------------------------------------

OTHER_KEY = "ipzlTte4muAuLTk2ByKW1bsnPVASqfUDki--2r2rkdI="
THIRD_KEY = Fernet.generate_key().decode()
TOKEN_TABLES = {
    "slack_bots": ("bot_token", "bot_refresh_token"),
    "slack_installations": ("bot_token", "bot_refresh_token"),
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


def secrets_known(slack: FakeSlack) -> set[str]:
    """Every token and refresh token the fake Slack handed out."""
    found = {grant.token for grant in slack.grants.values()}
    found |= {grant.refresh_token for grant in slack.grants.values() if grant.refresh_token}
    return found | slack.action_tokens


async def everything_stored(engine: AsyncEngine, database_url: str) -> str:
    """Every row of every table as text, and for SQLite the database files' bytes too."""
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        dumped = []
        for name in names:
            rows = await connection.execute(sa.text(f'SELECT * FROM "{name}"'))
            dumped += [repr(tuple(row)) for row in rows]
    if database_url.startswith("sqlite"):
        path = Path(database_url.split("///", 1)[1])
        for file in (path, path.with_name(path.name + "-wal")):
            if file.exists():
                dumped.append(file.read_bytes().decode("latin-1"))
    return "\n".join(dumped)


async def stored_tokens(engine: AsyncEngine) -> list[str]:
    found = []
    async with engine.connect() as connection:
        for table, columns in TOKEN_TABLES.items():
            for column in columns:
                values = await connection.scalars(
                    sa.text(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")
                )
                found += [str(value) for value in values]
    return found


async def answer_in(bot: BotUnderTest, text: str, *, token: str | None = None) -> None:
    """A mention in T0001's C0001 (with an action token, as Slack sends AI apps), answered."""
    full = f"<@{bot.slack.bot_user_id}> {text}"
    message = bot.slack.add_message("C0001", user="UALICE", text=full)
    event = mention(text=full, user="UALICE", ts=message.ts)
    if token is not None:
        event["action_token"] = token
    await bot.deliver(event)
    await bot.wait_for_answers("C0001", message.ts)


async def test_no_token_is_stored_in_plain_text(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    """OAuth with token rotation: the installed token, its refresh, the refreshed token and
    an action token never reach the database (nor, on SQLite, its files) as they are."""
    slack.token_rotation = True
    slack.token_lifetime_s = 3600  # inside the two-hour refresh window: refreshed at first use
    env = oauth_env(slack, openai_fake, database_url)
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        await install(bot, "T0001")
        slack.token_lifetime_s = 43_200
        await answer_in(bot, "hello", token=slack.new_action_token())
        assert slack.refreshes()
        assert bot.bot is not None
        stored = await everything_stored(bot.bot.engine, database_url)
        tokens = await stored_tokens(bot.bot.engine)
    leaked = [secret for secret in secrets_known(slack) if secret in stored]
    assert leaked == []
    # Both installation tables hold the refreshed token and refresh token (encrypted).
    [live] = [g for g in slack.grants.values() if g.team_id == "T0001" and not g.revoked][-1:]
    assert sorted(TokenCipher([TOKEN_KEY]).decrypt(t) for t in tokens) == sorted(
        [live.token, live.refresh_token or ""] * 2
    )


async def test_an_answered_turn_keeps_no_action_token(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=database_url,
        assistant_api="responses",
        SLACK_SEARCH="true",
    )
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        slack.add_message("C0001", user="UBOB", text="The deploy freeze starts Friday")
        openai_fake.tool_requests = [("search_workspace", {"query": "deploy freeze"})]
        token = slack.new_action_token()
        await answer_in(bot, "when is the freeze?", token=token)
        assert [search["action_token"] for search in slack.searches] == [token]
        assert bot.bot is not None
        async with bot.bot.engine.connect() as connection:
            kept = await connection.scalars(sa.select(InboxMessage.action_token))
            assert list(kept) == [None]


async def test_tokens_stored_in_plain_text_before_the_upgrade_keep_working_encrypted(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    slack.token_rotation = True
    env = oauth_env(slack, openai_fake, database_url)
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        await install(bot, "T0001")
        assert bot.bot is not None
        engine = bot.bot.engine
        async with engine.begin() as connection:  # as the bot before encryption stored them
            for table, columns in TOKEN_TABLES.items():
                for column in columns:
                    rows = await connection.execute(sa.text(f"SELECT id, {column} FROM {table}"))
                    for row_id, value in rows.all():
                        plain = TokenCipher([TOKEN_KEY]).decrypt(value)
                        await connection.execute(
                            sa.text(f"UPDATE {table} SET {column} = :v WHERE id = :id"),
                            {"v": plain, "id": row_id},
                        )
        assert set(await stored_tokens(engine)) & secrets_known(slack)
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        await answer_in(bot, "still there?")
        assert bot.bot is not None
        assert not set(await stored_tokens(bot.bot.engine)) & secrets_known(slack)


async def test_a_key_rotation_keeps_every_install_working(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    slack.token_rotation = True
    first = oauth_env(slack, openai_fake, database_url)
    async with BotUnderTest.running(first, slack=slack, openai=openai_fake) as bot:
        await install(bot, "T0001")
        await answer_in(bot, "one")
    # The new key first, the old one after it: start-up encrypts everything with the new one.
    rotating = {**first, "TOKEN_ENCRYPTION_KEYS": f"{OTHER_KEY}, {TOKEN_KEY}"}
    async with BotUnderTest.running(rotating, slack=slack, openai=openai_fake) as bot:
        await answer_in(bot, "two")
        assert bot.bot is not None
        tokens = await stored_tokens(bot.bot.engine)
    assert tokens and all(TokenCipher([OTHER_KEY]).decrypt(t) for t in tokens)
    # The old key can go.
    rotated = {**first, "TOKEN_ENCRYPTION_KEYS": OTHER_KEY}
    async with BotUnderTest.running(rotated, slack=slack, openai=openai_fake) as bot:
        await answer_in(bot, "three")
    # A key that reads nothing stored stops the start with one line.
    wrong = load_settings({**first, "TOKEN_ENCRYPTION_KEYS": THIRD_KEY}, dotenv_path=None)
    with pytest.raises(StartupError) as stopped:
        async with running_bot(wrong):
            pass
    assert str(stopped.value).startswith("TOKEN_ENCRYPTION_KEYS cannot read 4 stored tokens")


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ("", "TOKEN_ENCRYPTION_KEYS is not set: OAuth mode stores each workspace's tokens"),
        ("not-a-key", "TOKEN_ENCRYPTION_KEYS: key 1 is not a Fernet key"),
        (f"{TOKEN_KEY},short", "TOKEN_ENCRYPTION_KEYS: key 2 is not a Fernet key"),
    ],
)
def test_oauth_mode_needs_a_good_key(
    slack: FakeSlack, openai_fake: FakeOpenAI, keys: str, error: str
) -> None:
    env = oauth_env(slack, openai_fake, "sqlite:///x.db", TOKEN_ENCRYPTION_KEYS=keys)
    with pytest.raises(SettingsError) as raised:
        load_settings(env, dotenv_path=None)
    assert str(raised.value).startswith(error) and "\n" not in str(raised.value)


# Secrets never reach a log -----------------------------------------------------------------

ROTATING = "xoxe.xoxb-1-MS0yLTIyMjI-abcdefABCDEF0123456789"
REFRESH = "xoxe-1-My0xLTIyMjItMTIz-abcdef0123456789"


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("token xoxb-123-456-abcDEF", "token [redacted]"),
        (f"rotated to {ROTATING}.", "rotated to [redacted]."),
        (f"refresh {REFRESH}", "refresh [redacted]"),
        ("app xapp-1-A0-123-abc", "app [redacted]"),
        ("user xoxp-1-2-3-abc and xoxa-2-x", "user [redacted] and [redacted]"),
        ("key sk-proj-AbC123_def-456", "key [redacted]"),
        ("GET /slack/oauth_redirect?code=1234.5678.abc&state=s1", None),
        (
            "body_params: {'client_id': '1.2', 'client_secret': 'shh-abc', 'code': '99.88'}",
            "body_params: {'client_id': '1.2', 'client_secret': '[redacted]', "
            "'code': '[redacted]'}",
        ),
        (
            'body: {"ok":true,"access_token":"opaque1","refresh_token":"opaque2"}',
            'body: {"ok":true,"access_token":"[redacted]","refresh_token":"[redacted]"}',
        ),
        ('{"action_token": "1234.abcd", "query": "x"}', None),
        (
            "request: {'code': ['1234.5678.abc'], 'state': ['s1']}",
            "request: {'code': ['[redacted]'], 'state': ['[redacted]']}",
        ),
        ("headers: {'Authorization': 'Bearer opaque-mcp'}", None),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [redacted]"),
        (f"key {TOKEN_KEY}", "key [redacted]"),
        ("whsec_c2VjcmV0LXZhbHVlLWhlcmU= set", "[redacted] set"),
        ("HTTP status code: 500, exit code=2", "HTTP status code: 500, exit code=[redacted]"),
        ("token_type: bot, is_enterprise_install: false", None),
        ("no secret here: turn 12 answered in C0001", None),
    ],
)
def test_secrets_are_redacted_from_a_log_line(line: str, shown: str | None) -> None:
    redacted = redact(line)
    if shown is not None:
        assert redacted == shown
    for secret in ("1234.5678.abc", "s1", "1234.abcd", "opaque-mcp", "opaque1"):
        if secret in line:
            assert secret not in redacted
    if shown is None and "[redacted]" not in redacted:
        assert redacted == line


def test_configured_secrets_are_redacted_whatever_their_shape() -> None:
    assert redact("mcp sent Bearer abc-def-ghi-jkl", ["abc-def-ghi-jkl"]) == (
        "mcp sent Bearer [redacted]"
    )
    assert redact("a short one: abc", ["abc"]) == "a short one: abc"


OPENAI_KEY = "sk-proj-" + "Zx9" * 16
MCP_TOKEN = "mcp-" + "q7" * 20


@contextlib.asynccontextmanager
async def openai_with_key(api_key: str) -> AsyncIterator[FakeOpenAI]:
    """The fake OpenAI, expecting a key shaped like a real one."""
    fake = FakeOpenAI(api_key=api_key)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def servers_file(tmp_path: Path, server: FakeMcpServer) -> str:
    path = tmp_path / "mcp.json"
    entry = {"label": "orders", "url": server.url, "token_env": "ORDERS_TOKEN"}
    path.write_text(json.dumps({"servers": [entry]}))
    return str(path)


async def debug_log_of(
    env: dict[str, str],
    slack: FakeSlack,
    openai: FakeOpenAI,
    *,
    tool: tuple[str, dict[str, str]],
    oauth: bool,
) -> str:
    """`python -m bot` with `env`: (OAuth) installed in T0001, then asked a question carrying
    an action token that makes the model call `tool`; its whole log once it stopped."""
    process = BotProcess(env)
    process.start()
    try:
        await process.wait_ready()
        async with aiohttp.ClientSession() as http:
            site = Conversations(process.events_url, slack, openai, http)
            if oauth:
                await install(site, "T0001")
                slack.token_lifetime_s = 43_200
                await servers_on(site, SlackMode.OAUTH)
            openai.tool_requests = [tool]
            full = f"<@{slack.bot_user_id}> where is order A-17?"
            message = slack.add_message("C0001", user="UALICE", text=full)
            event = mention(text=full, user="UALICE", ts=message.ts)
            event["action_token"] = slack.new_action_token()
            await site.deliver(event)
            await slack.wait_for(
                lambda: any(is_finished(m) for m in slack.bot_replies("C0001", message.ts)),
                timeout=30,
            )
        assert process.terminate() == 0
    finally:
        process.stop()
    log = process.output()
    assert "DEBUG" in log and "Sending a request" in log  # slack_sdk's request logging ran
    return log


def leaked(log: str, known: set[str]) -> list[str]:
    found = sorted(secret for secret in known if secret in log)
    for secret in found:
        at = log.index(secret)
        print("LEAK", secret, log[max(0, at - 300) : at + 60])
    return found


async def test_a_debug_log_holds_no_secret_in_oauth_mode(
    slack: FakeSlack, tmp_path: Path, mcp_server: FakeMcpServer
) -> None:
    """`python -m bot` at DEBUG in OAuth mode: an install (code exchange), a token refresh,
    a key rotation at start, an MCP tool call with its bearer token and a message carrying an
    action token. The whole log, slack_sdk's request logging included, holds none of them."""
    slack.token_rotation = True
    slack.token_lifetime_s = 3600  # refreshed at first use
    async with openai_with_key(OPENAI_KEY) as openai:
        env = oauth_env(
            slack,
            openai,
            f"sqlite:///{tmp_path}/bot.db",
            LOG_LEVEL="DEBUG",
            TOKEN_ENCRYPTION_KEYS=f"{OTHER_KEY},{TOKEN_KEY}",
            MCP_SERVERS_FILE=servers_file(tmp_path, mcp_server),
            ORDERS_TOKEN=MCP_TOKEN,
            SLACK_SEARCH="true",
        )
        tool = ("lookup_order", {"order_id": "A-17"})
        log = await debug_log_of(env, slack, openai, tool=tool, oauth=True)
    assert slack.refreshes() and mcp_server.calls and slack.codes_issued
    assert "oauth.v2.access" in log
    known = secrets_known(slack) | set(slack.codes_issued)
    known |= {OPENAI_KEY, MCP_TOKEN, TOKEN_KEY, OTHER_KEY, STATE_SECRET, SIGNING_SECRET}
    assert leaked(log, known | {slack.client_secret}) == []


async def test_a_debug_log_holds_no_secret_with_workspace_search(
    slack: FakeSlack, tmp_path: Path, mcp_server: FakeMcpServer
) -> None:
    """Single-token mode at DEBUG: the bot token, a workspace search with the message's
    action token, an MCP server's token and the OpenAI key stay out of the log."""
    slack.add_message("C0001", user="UBOB", text="Order A-17 shipped on Friday")
    async with openai_with_key(OPENAI_KEY) as openai:
        env = bot_env(
            slack=slack,
            openai=openai,
            database_url=f"sqlite:///{tmp_path}/bot.db",
            assistant_api="responses",
            LOG_LEVEL="DEBUG",
            MCP_SERVERS_FILE=servers_file(tmp_path, mcp_server),
            ORDERS_TOKEN=MCP_TOKEN,
            SLACK_SEARCH="true",
        )
        tool = ("search_workspace", {"query": "A-17"})
        log = await debug_log_of(env, slack, openai, tool=tool, oauth=False)
    assert [s["action_token"] for s in slack.searches] == list(slack.action_tokens)
    assert "assistant.search.context" in log
    known = secrets_known(slack) | {OPENAI_KEY, MCP_TOKEN, SIGNING_SECRET}
    assert leaked(log, known) == []


# Uninstalling with DELETE_DATA_ON_UNINSTALL ----------------------------------------------

KEPT_BY_DESIGN = {"alembic_version", "slack_oauth_states", "webhook_events"}


async def rows_left(engine: AsyncEngine) -> dict[str, int]:
    """Rows in every table but those that hold nothing of a workspace."""
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        counts = {}
        for name in sorted(set(names) - KEPT_BY_DESIGN):
            counts[name] = int(await connection.scalar(sa.text(f'SELECT count(*) FROM "{name}"')))
    return {name: count for name, count in counts.items() if count}


def kept_at_openai(openai: FakeOpenAI) -> set[str]:
    return set(openai.threads) | set(openai.conversations)


async def uninstall(bot: BotUnderTest, team: str) -> None:
    bot.slack.uninstall(team)
    body = event_envelope({"type": "app_uninstalled"}, team_id=team)
    status, _, _ = await post_event(bot.http, bot.events_url, body, signing_secret=SIGNING_SECRET)
    assert status == 200


async def a_used_workspace(bot: BotUnderTest) -> None:
    """T0001 installed, a question answered with 👎 and a reason, a DM user greeted."""
    await install(bot, "T0001")
    message = await bot.mention("what is 2+2?")
    (answer,) = await bot.wait_for_answers("C0001", message.ts)
    assert await bot.click(answer, "feedback_down", user="UBOB") == 200
    await bot.slack.wait_for(lambda: len(bot.slack.opened_views) == 1)
    values = {REASON_BLOCK: {REASON_ACTION: {"type": "plain_text_input", "value": "Wrong"}}}
    assert await bot.submit_view(bot.slack.opened_views[0], values, user="UBOB") == 200
    assert bot.bot is not None
    await Store(bot.bot.engine).inbox.greet_once("T0001", "UALICE")


@pytest.mark.parametrize(
    ("api", "database_url"),
    [
        ("responses", "sqlite"),
        ("threads", "sqlite"),
        ("chat", "sqlite"),
        ("responses", "postgres"),
    ],
    indirect=["database_url"],
)
async def test_an_uninstall_deletes_everything_of_the_workspace_and_at_openai(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str, api: str
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=database_url,
        assistant_api=api,
        slack_mode=SlackMode.OAUTH,
        DELETE_DATA_ON_UNINSTALL="true",
    )
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        await a_used_workspace(bot)
        assert bot.bot is not None
        engine = bot.bot.engine
        left = await rows_left(engine)
        assert {"conversations", "feedback", "dm_users", "turn_usage"} <= set(left)
        assert api != "chat" or "chat_messages" in left
        assert api == "chat" or kept_at_openai(openai_fake)
        await uninstall(bot, "T0001")
        await slack.wait_for(lambda: not kept_at_openai(openai_fake), timeout=15)
        await bot.idle()
        await wait_until(lambda: rows_left(engine), {})


async def test_a_failed_delete_at_openai_is_kept_for_purge(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path}/bot.db"
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=database_url,
        assistant_api="responses",
        slack_mode=SlackMode.OAUTH,
        DELETE_DATA_ON_UNINSTALL="true",
    )
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        await a_used_workspace(bot)
        [conversation] = kept_at_openai(openai_fake)
        # OpenAI fails every attempt of the first delete (the SDK tries three times).
        openai_fake.fail_http("DELETE", r"/v1/conversations/[^/]+", status=500, times=3)
        await uninstall(bot, "T0001")
        assert bot.bot is not None
        engine = bot.bot.engine
        await wait_until(lambda: failed_attempts(engine), [1])
        assert kept_at_openai(openai_fake) == {conversation}
        assert await rows_left(engine) == {"remote_deletions": 1}
    await purge(load_settings(env, dotenv_path=None), older_than_days=30)
    assert kept_at_openai(openai_fake) == set()
    engine = create_engine(async_url(database_url))
    try:
        assert await rows_left(engine) == {}
    finally:
        await engine.dispose()


async def failed_attempts(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as connection:
        return list(await connection.scalars(sa.select(RemoteDeletion.attempts)))


async def wait_until(read: Callable[[], Awaitable[object]], expected: object) -> None:
    """Until `read()` gives `expected` (10 s at most); then it must."""
    deadline = time.monotonic() + 10
    while (found := await read()) != expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert found == expected
