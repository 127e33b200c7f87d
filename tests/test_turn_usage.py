"""Usage is counted from every model request of a turn (issue 17), on every backend: tool
rounds and approvals make several requests, and budgets and the cost metric see them all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import metrics
from bot.store.admin_models import TurnUsage
from tests.conftest import BotFactory
from tests.fakes.mcp_server import FakeMcpServer
from tests.harness import BotUnderTest
from tests.test_tools import (
    ALLOW_ACTION,
    all_backends,
    approval_request,
    mention_with_token,
    refunds_need_approval,
)


@pytest.fixture
async def mcp_server() -> AsyncIterator[FakeMcpServer]:
    server = FakeMcpServer()
    await server.start()
    yield server
    await server.stop()


async def stored_usage(bot: BotUnderTest) -> list[tuple[int, int, float | None]]:
    assert bot.bot is not None
    async with bot.bot.engine.connect() as connection:
        rows = await connection.execute(
            select(TurnUsage.input_tokens, TurnUsage.output_tokens, TurnUsage.cost_usd)
        )
        return [(row.input_tokens, row.output_tokens, row.cost_usd) for row in rows]


def counted(metric: str, **labels: str) -> float:
    """The sum of a metric's samples with these labels, in this process."""
    return sum(
        sample.value
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
        if sample.name == metric and labels.items() <= sample.labels.items()
    )


@all_backends
@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("delivery", ["stream", "poll"], indirect=True)
async def test_a_turn_with_an_approval_counts_every_request_it_made(
    make_bot: BotFactory,
    mcp_server: FakeMcpServer,
    tmp_path: Path,
) -> None:
    path = refunds_need_approval(mcp_server, tmp_path)
    async with make_bot(
        MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret", OPENAI_MODEL="gpt-5-mini"
    ) as bot:
        tokens_before = counted("bot_tokens_total", kind="output")
        cost_before = counted("bot_estimated_cost_usd_total")
        bot.openai.tool_requests = [("refund_order", {"order_id": "A-17"})]
        question = await bot.mention("please refund A-17")
        ask = await approval_request(bot, question.ts)
        await bot.click(ask, ALLOW_ACTION)
        await bot.wait_for_answers("C0001", question.ts, count=2)
        billed = list(bot.openai.usage_reported.values())
        if bot.assistant_api != "threads":  # a run is one request, whatever its steps
            assert len(billed) >= 2, billed
        total = (sum(b[0] for b in billed), sum(b[1] for b in billed))
        ((input_tokens, output_tokens, cost),) = await stored_usage(bot)
        assert (input_tokens, output_tokens) == total
        # The budgets read that row; the metrics grew by the same full count.
        assert counted("bot_tokens_total", kind="output") - tokens_before == total[1]
        assert cost is not None and cost > 0
        assert counted("bot_estimated_cost_usd_total") - cost_before == pytest.approx(cost)


@all_backends
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("delivery", ["stream", "poll"], indirect=True)
async def test_a_turn_that_searched_the_workspace_counts_every_request_it_made(
    make_bot: BotFactory,
) -> None:
    async with make_bot(SLACK_SEARCH="true") as bot:
        bot.slack.add_channel("C0002", name="release")
        bot.slack.add_message("C0002", user="UBOB", text="The deploy freeze starts Friday")
        bot.openai.tool_requests = [("search_workspace", {"query": "deploy freeze"})]
        token = bot.slack.new_action_token()
        question = await mention_with_token(bot, "when does the deploy freeze start?", token)
        await bot.wait_for_answers("C0001", question.ts)
        assert bot.slack.calls_to("assistant.search.context")
        billed = list(bot.openai.usage_reported.values())
        if bot.assistant_api != "threads":  # the search's output goes in a second request
            assert len(billed) == 2, billed
        total = (sum(b[0] for b in billed), sum(b[1] for b in billed))
        ((input_tokens, output_tokens, _),) = await stored_usage(bot)
        assert (input_tokens, output_tokens) == total
