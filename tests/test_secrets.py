"""Secrets and data (issue 17): what the bot stores, logs and deletes, and how long it waits
for a Slack that does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

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
