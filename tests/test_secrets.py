"""Secrets and data (issue 17): what the bot stores, logs and deletes, and how long it waits
for a Slack that does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.admin.home_view import REASON_ACTION, REASON_BLOCK
from bot.escape import escape_mrkdwn
from bot.installations import SignedStateStore
from bot.settings import database_url as async_url
from bot.store.db import create_engine, migrate
from tests.conftest import BotFactory
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import STATE_SECRET, BotUnderTest, SlackMode, bot_env
from tests.test_process import one_line, run_bot_expecting_failure


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


# A Slack that never answers --------------------------------------------------------------


async def test_a_slack_that_never_answers_stops_the_start_within_the_timeout(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    async with silent_server() as url:
        env = bot_env(
            slack=slack,
            openai=openai_fake,
            database_url=f"sqlite:///{tmp_path}/b.db",
            assistant_api="responses",
            SLACK_API_URL=f"{url}/api/",
        )
        started = time.monotonic()
        result = await asyncio.to_thread(run_bot_expecting_failure, env)
    assert time.monotonic() - started < 25
    assert one_line(result) == (
        f"bot: cannot reach Slack at SLACK_API_URL {url}/api/ (no answer within 15 s)"
    )


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
