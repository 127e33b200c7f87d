"""Usage is counted from every model request of a turn (issue 17), on every backend: tool
rounds and approvals make several requests, and budgets and the cost metric see them all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.store.admin_models import TurnUsage
from tests.conftest import BotFactory
from tests.fakes.mcp_server import FakeMcpServer
from tests.harness import BotUnderTest
from tests.test_tools import (
    ALLOW_ACTION,
    all_backends,
    approval_request,
    refunds_need_approval,
    sqlite_only,
)


@pytest.fixture
async def mcp_server() -> AsyncIterator[FakeMcpServer]:
    server = FakeMcpServer()
    await server.start()
    yield server
    await server.stop()


async def stored_usage(bot: BotUnderTest) -> list[tuple[int, int]]:
    assert bot.bot is not None
    async with bot.bot.engine.connect() as connection:
        rows = await connection.execute(select(TurnUsage.input_tokens, TurnUsage.output_tokens))
        return [(row.input_tokens, row.output_tokens) for row in rows]


@all_backends
@sqlite_only
@pytest.mark.parametrize("delivery", ["stream", "poll"], indirect=True)
async def test_a_turn_with_an_approval_counts_every_request_it_made(
    make_bot: BotFactory,
    mcp_server: FakeMcpServer,
    tmp_path: Path,
) -> None:
    path = refunds_need_approval(mcp_server, tmp_path)
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        bot.openai.tool_requests = [("refund_order", {"order_id": "A-17"})]
        question = await bot.mention("please refund A-17")
        ask = await approval_request(bot, question.ts)
        await bot.click(ask, ALLOW_ACTION)
        await bot.wait_for_answers("C0001", question.ts, count=2)
        billed = list(bot.openai.usage_reported.values())
        if bot.assistant_api != "threads":  # a run is one request, whatever its steps
            assert len(billed) >= 2, billed
        total = (sum(b[0] for b in billed), sum(b[1] for b in billed))
        assert await stored_usage(bot) == [total]
