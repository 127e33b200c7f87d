"""Nothing of a turn stays in memory once it is over (issue 17): the backends' per-turn maps
are dropped when a turn ends, however it ended. (The live message and the latency clock are
the turn's session's, closed with it: tests/unit/turns/test_turn_session.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import BotFactory
from tests.fakes.mcp_server import FakeMcpServer
from tests.harness import BotUnderTest
from tests.test_tools import (
    DENY_ACTION,
    all_backends,
    approval_request,
    orders,
    servers_file,
    sqlite_only,
)

PER_TURN_MAPS = (
    "_contexts",
    "_decisions",
    "_known_outputs",
    "_tasks",
    "_calls_made",
    "_unreachable",
    "_servers",
    "_activity",
    "_runs",
    "_turns",
)


@pytest.fixture
async def mcp_server() -> AsyncIterator[FakeMcpServer]:
    server = FakeMcpServer()
    await server.start()
    yield server
    await server.stop()


def held(bot: BotUnderTest) -> dict[str, object]:
    """What the bot's backend still holds per turn (the maps it has, non-empty only)."""
    assert bot.bot is not None
    backend = bot.bot.backend
    return {name: getattr(backend, name) for name in PER_TURN_MAPS if getattr(backend, name, None)}


@all_backends
@sqlite_only
@pytest.mark.parametrize("delivery", ["poll"], indirect=True)
async def test_finished_failed_expired_and_denied_turns_leave_nothing_in_memory(
    make_bot: BotFactory,
    mcp_server: FakeMcpServer,
    tmp_path: Path,
) -> None:
    down = {"label": "wiki", "url": "http://127.0.0.1:1/mcp"}
    path = servers_file(tmp_path, orders(mcp_server, require_approval=["refund_order"]), down)
    async with make_bot(
        MCP_SERVERS_FILE=path,
        ORDERS_TOKEN="mcp-secret",
        ANSWER_DEADLINE_S="2",
        SLACK_SEARCH="true",
    ) as bot:
        bot.openai.tool_requests = [("lookup_order", {"order_id": "A-17"})]
        answered = await bot.mention("where is A-17?")
        await bot.wait_for_answers("C0001", answered.ts)

        bot.openai.tool_requests = [("refund_order", {"order_id": "B-2"})]
        denied = await bot.mention("refund B-2")
        await bot.click(await approval_request(bot, denied.ts), DENY_ACTION)
        await bot.wait_for_answers("C0001", denied.ts, count=2)

        bot.openai.tool_requests = []
        bot.openai.script_runs("failed")
        failed = await bot.mention("this one fails")
        await bot.wait_for_answers("C0001", failed.ts)

        bot.openai.script_runs("stuck")
        expired = await bot.mention("this one never finishes")
        await bot.wait_for_answers("C0001", expired.ts)

        assert held(bot) == {}
