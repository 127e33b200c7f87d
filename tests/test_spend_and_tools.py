"""Operators stay in control of spend and credentials (issue 17), end to end through the
real bot, in single-token and OAuth mode: a channel's budget and model stay within the
operator's bounds, and the operator's MCP servers reach only the workspaces, channels and
people the operator and the workspace's admins allow."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import BotFactory
from tests.fakes.events import mention
from tests.fakes.mcp_server import FakeMcpServer
from tests.fakes.slack import FakeSlack, SlackMessage
from tests.harness import BotUnderTest, SlackMode
from tests.test_admin import ask, run_starts
from tests.test_intake import EXTERNAL_TEAM, _external
from tests.test_tools import offered_servers, orders, servers_file

pytestmark = pytest.mark.both_slack_modes
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
responses_only = pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
polled = pytest.mark.parametrize("delivery", ["poll"], indirect=True)
all_backends = pytest.mark.parametrize(
    "assistant_api", ["chat", "threads", "responses"], indirect=True
)


@pytest.fixture
def admin(slack: FakeSlack) -> FakeSlack:
    """UADMIN is a workspace admin (users.info says so)."""
    slack.add_user("UADMIN", display_name="Ada", is_admin=True)
    return slack


@pytest.fixture
async def mcp_server() -> AsyncIterator[FakeMcpServer]:
    server = FakeMcpServer()
    await server.start()
    yield server
    await server.stop()


# Spend ----------------------------------------------------------------------------------


@sqlite_only
@responses_only
@polled
async def test_a_channel_budget_may_lower_the_operators_cap_but_never_raise_it(
    admin: FakeSlack, make_bot: BotFactory, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    # Ten dollars a token: the first answer alone spends the operator's $5 for the month.
    prices.write_text(json.dumps({"gpt-test": {"input": 1e7, "output": 1e7}}))
    async with make_bot(CHANNEL_MONTHLY_COST_LIMIT_USD="5", PRICES_FILE=str(prices)) as bot:
        status, above = await bot.command("budget 100 usd per month", user="UADMIN")
        assert status == 200 and above["response_type"] == "ephemeral"
        assert "above the operator's ceiling" in above["text"]
        assert "$5.00 per month" in above["text"]
        _, shown = await bot.command("show")
        assert "this channel's budget" not in shown["text"]
        assert "Limit (the monthly limit per channel): $5.00 per month" in shown["text"]

        # A budget in tokens is allowed, and the operator's cap still applies beside it.
        _, tokens = await bot.command("budget 1000000 tokens per month", user="UADMIN")
        assert "1,000,000 tokens per month" in tokens["text"]
        assert "$5.00 per month still applies" in tokens["text"]
        assert "Echo" in await ask(bot, "first question", channel="C0001")
        refusal = await ask(bot, "second question", channel="C0001")
        assert "the monthly limit per channel" in refusal and "$5.00 per month" in refusal
        assert len(run_starts(bot.openai)) == 1

        _, lower = await bot.command("budget 2 usd per month", user="UADMIN")
        assert "This channel's budget is $2.00 per month." in lower["text"]


# Models ---------------------------------------------------------------------------------


@responses_only
@polled
@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_channel_model_is_one_the_operator_allows_and_never_a_server_error(
    admin: FakeSlack, make_bot: BotFactory
) -> None:
    async with make_bot() as bot:
        status, long = await bot.command("model " + "g" * 300, user="UADMIN")
        assert status == 200 and long["response_type"] == "ephemeral"
        assert "at most 128 characters" in long["text"]
        _, unknown = await bot.command("model gpt-9-ultra", user="UADMIN")
        assert "`gpt-9-ultra` is not one of the models" in unknown["text"]
        assert "`gpt-5-nano`" in unknown["text"] and "`gpt-test`" in unknown["text"]
        _, shown = await bot.command("show")
        assert "Model (default)" in shown["text"]

        _, chosen = await bot.command("model gpt-5-nano", user="UADMIN")
        assert "uses the model `gpt-5-nano`" in chosen["text"]
        await ask(bot, "which model?", channel="C0001")
        assert run_starts(bot.openai)[-1]["model"] == "gpt-5-nano"

    # The operator narrows the list: a channel's earlier choice gives way to the default.
    async with make_bot(ALLOWED_MODELS="gpt-test,house-model") as bot:
        await ask(bot, "and now?", channel="C0001")
        assert run_starts(bot.openai)[-1]["model"] == "gpt-test"
        _, shown = await bot.command("show")
        assert "not allowed by the operator any more" in shown["text"]
        _, refused = await bot.command("model gpt-5-nano", user="UADMIN")
        assert "not one of the models" in refused["text"] and "`house-model`" in refused["text"]
        _, chosen = await bot.command("model house-model", user="UADMIN")
        assert "uses the model `house-model`" in chosen["text"]


# Tool servers ---------------------------------------------------------------------------


async def ask_for_an_order(bot: BotUnderTest) -> set[str]:
    """Ask a question the model answers with a tool; the servers its first request offered
    (the chat and threads backends make more requests after a tool call)."""
    before = len(offered_servers(bot))
    bot.openai.tool_requests = [("lookup_order", {"order_id": "A-17"})]
    question = await bot.mention("where is A-17?")
    await bot.wait_for_answers("C0001", question.ts)
    return offered_servers(bot)[before]


@all_backends
@sqlite_only
@polled
async def test_in_oauth_mode_tool_servers_are_off_until_an_admin_turns_them_on(
    admin: FakeSlack,
    make_bot: BotFactory,
    mcp_server: FakeMcpServer,
    tmp_path: Path,
    slack_mode: SlackMode,
) -> None:
    path = servers_file(tmp_path, orders(mcp_server))
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        offered = await ask_for_an_order(bot)
        if not slack_mode.oauth:
            # The operator's own workspace: every server, as before.
            assert offered == {"orders"}
            assert mcp_server.calls == [("lookup_order", {"order_id": "A-17"})]
            return
        assert offered == set() and mcp_server.calls == []
        _, listed = await bot.command("tools")
        assert "the default: none" in listed["text"] and "`orders`: off" in listed["text"]
        _, shown = await bot.command("show")
        assert "none until an admin turns them on" in shown["text"]
        _, refused = await bot.command("tools all", user="UBOB")
        assert "only workspace admins" in refused["text"]

        _, on = await bot.command("tools all", user="UADMIN")
        assert "only these tool servers here" in on["text"] and "`orders`" in on["text"]
        assert await ask_for_an_order(bot) == {"orders"}
        assert mcp_server.calls == [("lookup_order", {"order_id": "A-17"})]

        _, reset = await bot.command("tools reset", user="UADMIN")
        assert "no tool servers until an admin turns them on" in reset["text"]
        assert await ask_for_an_order(bot) == set()


@sqlite_only
@responses_only
@polled
async def test_a_server_limited_to_named_teams_is_offered_only_there(
    admin: FakeSlack,
    make_bot: BotFactory,
    mcp_server: FakeMcpServer,
    tmp_path: Path,
    slack_mode: SlackMode,
) -> None:
    elsewhere = {**orders(mcp_server), "label": "wiki", "teams": ["TOTHER", "EOTHER"]}
    path = servers_file(tmp_path, orders(mcp_server, teams=[admin.team_id]), elsewhere)
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        _, listed = await bot.command("tools")
        assert "`orders`" in listed["text"] and "wiki" not in listed["text"]
        _, refused = await bot.command("tools wiki", user="UADMIN")
        assert "There is no tool server `wiki`" in refused["text"]
        if slack_mode.oauth:
            await bot.command("tools all", user="UADMIN")
        assert await ask_for_an_order(bot) == {"orders"}


async def mention_from(bot: BotUnderTest, user: str, text: str, *, external: bool) -> SlackMessage:
    """A mention with an action token (workspace search could act for it), from a member
    or from a user of another organisation in a Slack Connect channel."""
    said = f"<@{bot.slack.bot_user_id}> {text}"
    message = bot.slack.add_message("C0001", user=user, text=said)
    event = mention(text=said, user=user, ts=message.ts)
    event["action_token"] = bot.slack.new_action_token()
    await bot.deliver(_external(event) if external else event)
    await bot.wait_for_answers("C0001", message.ts)
    return message


@all_backends
@sqlite_only
@polled
async def test_a_slack_connect_user_gets_only_the_servers_naming_their_team(
    admin: FakeSlack,
    make_bot: BotFactory,
    mcp_server: FakeMcpServer,
    tmp_path: Path,
    slack_mode: SlackMode,
) -> None:
    shared = {**orders(mcp_server), "label": "wiki", "teams": [admin.team_id, EXTERNAL_TEAM]}
    path = servers_file(tmp_path, orders(mcp_server), shared)
    env = {"MCP_SERVERS_FILE": path, "ORDERS_TOKEN": "mcp-secret", "SLACK_SEARCH": "true"}
    async with make_bot(**env) as bot:
        bot.slack.add_user("UEXT", display_name="Erin")
        if slack_mode.oauth:
            await bot.command("tools all", user="UADMIN")
        await mention_from(bot, "UALICE", "hello from here", external=False)
        await mention_from(bot, "UEXT", "hello from outside", external=True)
        local, outside = offered_servers(bot)
        assert {"orders", "wiki"} <= local
        assert "slack" in local  # workspace search, for members, in every install mode
        assert outside == {"wiki"}  # neither `orders` nor workspace search


@sqlite_only
@responses_only
@polled
async def test_a_slack_connect_user_gets_no_tools_from_servers_naming_no_teams(
    admin: FakeSlack,
    make_bot: BotFactory,
    mcp_server: FakeMcpServer,
    tmp_path: Path,
    slack_mode: SlackMode,
) -> None:
    path = servers_file(tmp_path, orders(mcp_server))
    env = {"MCP_SERVERS_FILE": path, "ORDERS_TOKEN": "mcp-secret", "SLACK_SEARCH": "true"}
    async with make_bot(**env) as bot:
        bot.slack.add_user("UEXT", display_name="Erin")
        if slack_mode.oauth:
            await bot.command("tools all", user="UADMIN")
        await mention_from(bot, "UEXT", "hello from outside", external=True)
        await mention_from(bot, "UALICE", "hello from here", external=False)
        outside, local = offered_servers(bot)
        assert outside == set()
        assert "orders" in local
