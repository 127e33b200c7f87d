"""Secrets and data (issue 17): what the bot stores, logs and deletes, and how long it waits
for a Slack that does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.admin.home_view import REASON_ACTION, REASON_BLOCK
from bot.escape import escape_mrkdwn
from tests.conftest import BotFactory
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import bot_env
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
