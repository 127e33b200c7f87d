"""Approvals expire (issue 17): a tool call nobody allows or denies within
`APPROVAL_TIMEOUT_S` is answered as denied, the card says it expired, and the answer says why.
The deadline is counted from the stored request, so it holds across a restart."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings
from tests.conftest import ON_ONE_BACKEND, BotFactory
from tests.fakes.mcp_server import FakeMcpServer
from tests.fakes.slack import SlackMessage
from tests.harness import BotUnderTest, SlackMode
from tests.test_tools import (
    ALLOW_ACTION,
    BASE,
    all_backends,
    answer_text,
    approval_request,
    refunds_need_approval,
    servers_on,
)


@pytest.fixture
async def mcp_server() -> AsyncIterator[FakeMcpServer]:
    server = FakeMcpServer()
    await server.start()
    yield server
    await server.stop()


def card(bot: BotUnderTest, thread_ts: str, ts: str) -> SlackMessage:
    return next(m for m in bot.slack.bot_replies("C0001", thread_ts) if m.ts == ts)


def has_buttons(message: SlackMessage) -> bool:
    return any(block.get("type") == "actions" for block in message.blocks or [])


# One backend: an expired request reaches the model as a denied call, which each backend is
# tested with (test_a_denied_call_is_not_run_and_the_model_is_told), and a turn waiting for
# approval resumes after a restart on each backend and database
# (test_a_turn_waiting_for_approval_survives_a_restart). What expiry adds (the sweep on each
# database, the card updated through the stored install, the note, each delivery) is kept.
@ON_ONE_BACKEND
@pytest.mark.both_slack_modes
@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("delivery", ["poll", "stream"], indirect=True)
async def test_an_approval_nobody_answers_expires_after_a_restart_and_the_turn_explains(
    make_bot: BotFactory, mcp_server: FakeMcpServer, slack_mode: SlackMode, tmp_path: Path
) -> None:
    settings = {
        "MCP_SERVERS_FILE": refunds_need_approval(mcp_server, tmp_path),
        "ORDERS_TOKEN": "mcp-secret",
        # Long enough that the first process is gone before the request expires, even on
        # a loaded machine; every second more is waited out by each variant.
        "APPROVAL_TIMEOUT_S": "2",
    }
    async with make_bot(**settings) as bot:
        await servers_on(bot, slack_mode)
        bot.openai.tool_requests = [("refund_order", {"order_id": "A-17"})]
        question = await bot.mention("please refund A-17")
        ask = await approval_request(bot, question.ts)
        stale = copy.deepcopy(ask)  # the card as a client that was not refreshed shows it
    # Nobody clicks; the process that asked is gone. The next one expires the request.
    async with make_bot(**settings) as bot:
        bot.openai.tool_requests = []
        await bot.slack.wait_for(lambda: not has_buttons(card(bot, question.ts, ask.ts)))
        expired = card(bot, question.ts, ask.ts)
        assert "Expired" in str(expired.blocks) and "2 seconds" in str(expired.blocks)
        await bot.slack.wait_for(
            lambda: "Echo: Alice: please refund A-17" in answer_text(bot, question.ts)
        )
        await bot.idle()
        text = answer_text(bot, question.ts)
        assert "Nobody allowed `refund_order` within 2 seconds, so I did not run it" in text
        assert mcp_server.calls == []

        # A late click changes nothing; someone else's is refused as before.
        await bot.click(stale, ALLOW_ACTION)
        await bot.click(stale, ALLOW_ACTION, user="UBOB")
        await bot.idle()
        assert mcp_server.calls == []
        await bot.slack.wait_for(lambda: len(bot.slack.ephemerals) == 2)
        notes = {e.user: e.text for e in bot.slack.ephemerals}
        assert "expired" in notes["UALICE"]
        assert "Only the person who asked" in notes["UBOB"]


@pytest.mark.parametrize("value", ["0", "soon", "-5"])
def test_a_bad_approval_timeout_is_refused_in_one_line(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({**BASE, "APPROVAL_TIMEOUT_S": value}, dotenv_path=None)
    assert "APPROVAL_TIMEOUT_S" in str(refused.value) and "\n" not in str(refused.value)


def test_approvals_wait_fifteen_minutes_by_default() -> None:
    assert load_settings(BASE, dotenv_path=None).approval_timeout_s == 900


# A stream Slack ends on its own ------------------------------------------------------------


@all_backends
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("delivery", ["stream"], indirect=True)
async def test_a_stream_slack_ended_around_an_approval_is_finished_with_an_update(
    make_bot: BotFactory, mcp_server: FakeMcpServer, tmp_path: Path
) -> None:
    path = refunds_need_approval(mcp_server, tmp_path)
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        bot.slack.stream_timeout_s = 0.0  # Slack ends every stream as soon as it starts
        bot.openai.tool_requests = [("refund_order", {"order_id": "A-17"})]
        question = await bot.mention("please refund A-17")
        ask = await approval_request(bot, question.ts)
        await bot.idle()  # the turn waits, its stream ended by Slack
        await bot.click(ask, ALLOW_ACTION)
        await bot.slack.wait_for(lambda: "Order A-17 refunded" in answer_text(bot, question.ts))
        await bot.idle()
        answers = [m for m in bot.slack.bot_replies("C0001", question.ts) if m.ts != ask.ts]
        (answer,) = answers  # the streamed message holds the answer; no second message
        assert "Order A-17 refunded" in answer.text and not answer.streaming
        assert any(call.args.get("ts") == answer.ts for call in bot.slack.calls_to("chat.update"))
        assert mcp_server.calls == [("refund_order", {"order_id": "A-17"})]
