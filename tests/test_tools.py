"""Tools (issue 13): MCP servers on every backend, shown live as task updates.

The MCP server is real (the `mcp` SDK's server over Streamable HTTP, in this process); the
fake OpenAI asks for tool calls the way each API does.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.assistants.base import ToolProgress, ToolSource, ToolStatus
from bot.assistants.responses_items import unanswered_calls
from bot.assistants.responses_requests import INTERRUPTED_TEXT, mcp_tool
from bot.live import task_update_chunk
from bot.settings import SettingsError, load_settings
from bot.tools.approvals import ALLOW_ACTION, DENY_ACTION, Click, click_outcome, waited
from bot.tools.config import McpServer, ToolsConfigError, parse_servers
from bot.tools.slack_search import Hit, Refused, hits_text, parse_hits, refused
from tests.conftest import BotFactory
from tests.fakes.events import mention
from tests.fakes.mcp_server import FakeMcpServer
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack, SlackMessage
from tests.harness import RUN_STARTS, BotUnderTest, Conversations, SlackMode, bot_env
from tests.test_surfaces import ask_in_pane, pane_thread, start_pane

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "OPENAI_API_KEY": "k"}
ENV = {"ORDERS_TOKEN": "mcp-secret", "API_KEY": "k-1"}


# The servers file, as a table ---------------------------------------------------------

GOOD = [
    (
        '{"servers": [{"label": "orders", "url": "https://x.example/mcp"}]}',
        False,
        McpServer("orders", "https://x.example/mcp"),
    ),
    (
        '[[servers]]\nlabel = "orders"\nurl = "https://x.example/mcp"\ntoken_env = "ORDERS_TOKEN"\n'
        'allowed_tools = ["lookup_order"]\nrequire_approval = "always"\n',
        True,
        McpServer(
            "orders",
            "https://x.example/mcp",
            {"Authorization": "Bearer mcp-secret"},
            ("lookup_order",),
            True,
        ),
    ),
    (
        '{"servers": [{"label": "o", "url": "http://h/mcp", "headers": {"X-Team": "eng"},'
        ' "headers_env": {"X-Api-Key": "API_KEY"}, "require_approval": ["refund_order"]}]}',
        False,
        McpServer(
            "o", "http://h/mcp", {"X-Team": "eng", "X-Api-Key": "k-1"}, None, ("refund_order",)
        ),
    ),
]


@pytest.mark.parametrize(("text", "toml", "expected"), GOOD)
def test_servers_file_parses(text: str, toml: bool, expected: McpServer) -> None:
    assert parse_servers(text, toml=toml, env=ENV) == (expected,)


BAD = [
    ("{", "is not valid JSON"),
    ('{"servers": {}}', "list of servers"),
    ('{"servers": [{"url": "https://x/mcp"}]}', "'label' must be"),
    ('{"servers": [{"label": "a", "url": "ftp://x"}]}', "'url' must be an http(s) URL"),
    ('{"servers": [{"label": "a", "url": "https://x", "token_env": "NOPE"}]}', "NOPE is not set"),
    (
        '{"servers": [{"label": "a", "url": "https://x", "headers": {"Authorization": "t"}}]}',
        "token_env",
    ),
    ('{"servers": [{"label": "a", "url": "https://x", "require_approval": 3}]}', "approval"),
    ('{"servers": [{"label": "a", "url": "https://x", "colour": "red"}]}', "unknown key 'colour'"),
    (
        '{"servers": [{"label": "a", "url": "https://x"}, {"label": "a", "url": "https://y"}]}',
        "twice",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_bad_servers_file_is_refused_with_one_line(text: str, message: str) -> None:
    with pytest.raises(ToolsConfigError, match=re.escape(message)) as caught:
        parse_servers(text, toml=False, env=ENV)
    assert "\n" not in str(caught.value)


def test_a_bad_servers_file_stops_the_bot_at_start(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text('{"servers": [{"label": "a", "url": "https://x", "token_env": "NOPE"}]}')
    with pytest.raises(SettingsError, match=r"MCP_SERVERS_FILE .* NOPE is not set"):
        load_settings({**BASE, "MCP_SERVERS_FILE": str(path)}, dotenv_path=None)
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings({**BASE, "MCP_SERVERS_FILE": str(tmp_path / "none")}, dotenv_path=None)


# End to end ---------------------------------------------------------------------------


@pytest.fixture
async def mcp_server() -> AsyncIterator[FakeMcpServer]:
    server = FakeMcpServer()
    await server.start()
    yield server
    await server.stop()


def servers_file(tmp_path: Path, *entries: dict[str, object]) -> str:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"servers": list(entries)}))
    return str(path)


def orders(server: FakeMcpServer, **extra: object) -> dict[str, object]:
    return {"label": "orders", "url": server.url, "token_env": "ORDERS_TOKEN", **extra}


sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
streamed = pytest.mark.parametrize("delivery", ["stream"], indirect=True)
chat_only = pytest.mark.parametrize("assistant_api", ["chat"], indirect=True)
all_backends = pytest.mark.parametrize(
    "assistant_api", ["chat", "threads", "responses"], indirect=True
)


async def servers_on(bot: Conversations, slack_mode: SlackMode) -> None:
    """In OAuth mode (and org-wide) tool servers are off until a workspace admin turns them
    on in the channel (tests/test_spend_and_tools.py)."""
    if slack_mode.oauth:
        bot.slack.add_user("UADMIN", display_name="Ada", is_admin=True)
        _, on = await bot.command("tools all", user="UADMIN")
        assert "only these tool servers here" in on["text"]


def task_updates(bot: BotUnderTest, channel: str, thread_ts: str) -> list[tuple[str, str]]:
    return [
        (chunk["title"], chunk["status"])
        for message in bot.slack.bot_replies(channel, thread_ts)
        for chunk in message.chunks
        if chunk.get("type") == "task_update"
    ]


@pytest.mark.both_slack_modes
@all_backends
@sqlite_only
@streamed
async def test_a_tool_call_is_answered_and_shown_live(
    make_bot: BotFactory, mcp_server: FakeMcpServer, tmp_path: Path, slack_mode: SlackMode
) -> None:
    path = servers_file(tmp_path, orders(mcp_server))
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        await servers_on(bot, slack_mode)
        bot.openai.assistant_tools = [{"type": "code_interpreter"}]
        bot.openai.tool_requests = [("lookup_order", {"order_id": "A-17"})]
        question = await bot.mention("where is order A-17?")
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
        assert "Order A-17: shipped on 3 May, tracking 1Z999" in answer.text
        assert mcp_server.calls == [("lookup_order", {"order_id": "A-17"})]
        assert set(mcp_server.seen_auth) == {"Bearer mcp-secret"}
        assert task_updates(bot, "C0001", question.ts) == [
            ("lookup_order (orders)", "in_progress"),
            ("lookup_order (orders)", "complete"),
        ]
        (streamed_message,) = bot.slack.bot_replies("C0001", question.ts)
        assert streamed_message.task_display_mode == "timeline"
        if bot.assistant_api == "threads":
            # The run's tools replace the assistant's: its own are passed along.
            (run,) = bot.openai.requests_to("POST", r"/v1/threads/[^/]+/runs$")
            assert {"type": "code_interpreter"} in run.body["tools"]
        if bot.assistant_api == "responses":
            # OpenAI calls the server itself, with the token from the environment.
            (create,) = bot.openai.requests_to("POST", r"/v1/responses$")
            (tool,) = create.body["tools"]
            assert tool["type"] == "mcp" and tool["server_label"] == "orders"
            assert tool["headers"] == {"Authorization": "Bearer mcp-secret"}


@all_backends
@sqlite_only
@streamed
async def test_a_failing_tool_reaches_the_model_as_a_tool_error(
    make_bot: BotFactory, mcp_server: FakeMcpServer, tmp_path: Path
) -> None:
    path = servers_file(tmp_path, orders(mcp_server))
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        bot.openai.tool_requests = [("broken_tool", {"query": "x"})]
        question = await bot.mention("try the broken one")
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
        assert answer.text.startswith("Echo: Alice: try the broken one")
        assert "Error executing tool broken_tool" in answer.text
        assert task_updates(bot, "C0001", question.ts)[-1] == ("broken_tool (orders)", "error")


@all_backends
@sqlite_only
@pytest.mark.parametrize("delivery", ["poll"], indirect=True)
async def test_a_server_that_is_down_is_named_to_the_user(
    make_bot: BotFactory, mcp_server: FakeMcpServer, tmp_path: Path
) -> None:
    down = {"label": "wiki", "url": "http://127.0.0.1:1/mcp"}
    path = servers_file(tmp_path, orders(mcp_server), down)
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        bot.openai.tool_requests = [("lookup_order", {"order_id": "B-2"})]
        question = await bot.mention("and B-2?")
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
        assert "The tool server `wiki` could not be reached" in answer.text
        assert "Order B-2: waiting for stock" in answer.text


# Per-channel choice of servers ----------------------------------------------------------


def offered_servers(bot: BotUnderTest) -> list[set[str]]:
    """The MCP servers (labels) each run, response or completion so far was offered: remote
    `mcp` tools (responses) or the functions the bot lists (threads, chat)."""
    offered = []
    for request in bot.openai.requests_to("POST", RUN_STARTS):
        labels = set()
        for tool in request.body.get("tools") or []:
            if tool.get("type") == "mcp":
                labels.add(tool["server_label"])
            elif tool.get("type") == "function":
                name = (tool.get("function") or tool)["name"]
                labels.add(name.split("__")[0])
        offered.append(labels)
    return offered


@all_backends
@sqlite_only
@pytest.mark.parametrize("delivery", ["poll"], indirect=True)
async def test_a_channel_set_to_no_tool_servers_is_offered_none_while_others_still_are(
    make_bot: BotFactory, mcp_server: FakeMcpServer, tmp_path: Path
) -> None:
    wiki = {"label": "wiki", "url": mcp_server.url, "token_env": "ORDERS_TOKEN"}
    path = servers_file(tmp_path, orders(mcp_server), wiki)
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        bot.slack.add_user("UADMIN", display_name="Ada", is_admin=True)
        bot.slack.add_channel("C0002", name="quiet")
        _, refused = await bot.command("tools none", user="UBOB", channel="C0002")
        assert "only workspace admins" in refused["text"]
        _, unknown = await bot.command("tools jira", user="UADMIN", channel="C0002")
        assert "no tool server `jira`" in unknown["text"]
        assert "The configured ones are `orders`, `wiki`." in unknown["text"]
        _, done = await bot.command("tools none", user="UADMIN", channel="C0002")
        assert "no tool servers in this channel" in done["text"]
        _, listed = await bot.command("tools", user="UBOB", channel="C0002")
        assert "`orders`: off" in listed["text"] and "`wiki`: off" in listed["text"]
        _, shown = await bot.command("show", user="UBOB", channel="C0002")
        assert "Tool servers (this channel): none" in shown["text"]

        bot.openai.tool_requests = [("lookup_order", {"order_id": "A-17"})]
        quiet = await bot.mention("where is A-17?", channel="C0002")
        (answer,) = await bot.wait_for_answers("C0002", quiet.ts)
        assert "Order A-17" not in answer.text
        assert mcp_server.calls == []
        assert offered_servers(bot) == [set()]

        question = await bot.mention("where is A-17?")
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
        assert "Order A-17: shipped" in answer.text
        assert offered_servers(bot)[1] == {"orders", "wiki"}

        # One server chosen: only that one is offered; `all` goes back to the default.
        await bot.command("tools wiki", user="UADMIN", channel="C0002")
        before = len(offered_servers(bot))
        third = await bot.mention("and now?", channel="C0002")
        await bot.wait_for_answers("C0002", third.ts)
        assert offered_servers(bot)[before] == {"wiki"}
        _, reset = await bot.command("tools all", user="UADMIN", channel="C0002")
        assert "every configured tool server" in reset["text"]
        _, listed = await bot.command("tools", channel="C0002")
        assert "`orders`: on" in listed["text"] and "the default" in listed["text"]


# Approval -----------------------------------------------------------------------------


def refunds_need_approval(server: FakeMcpServer, tmp_path: Path) -> str:
    return servers_file(tmp_path, orders(server, require_approval=["refund_order"]))


async def approval_request(bot: BotUnderTest, thread_ts: str) -> SlackMessage:
    """The bot's Allow/Deny question in the thread, once it is there."""

    def asking() -> SlackMessage | None:
        for message in bot.slack.bot_replies("C0001", thread_ts):
            for block in message.blocks or []:
                if any(e.get("action_id") == ALLOW_ACTION for e in block.get("elements") or []):
                    return message
        return None

    await bot.slack.wait_for(lambda: asking() is not None)
    found = asking()
    assert found is not None
    return found


def answer_text(bot: BotUnderTest, thread_ts: str) -> str:
    return "\n".join(m.text for m in bot.answers("C0001", thread_ts))


@pytest.mark.both_slack_modes
@all_backends
@sqlite_only
@streamed
async def test_a_call_needing_approval_runs_once_the_asker_allows_it(
    make_bot: BotFactory, mcp_server: FakeMcpServer, tmp_path: Path, slack_mode: SlackMode
) -> None:
    path = refunds_need_approval(mcp_server, tmp_path)
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        await servers_on(bot, slack_mode)
        bot.openai.tool_requests = [("refund_order", {"order_id": "A-17"})]
        question = await bot.mention("please refund A-17")
        ask = await approval_request(bot, question.ts)
        assert "may I run `refund_order` (orders)" in ask.text
        assert '"order_id": "A-17"' in str(ask.blocks)
        await bot.idle()  # the turn waits, stored; nobody works on it
        assert mcp_server.calls == []

        # Only the person who asked decides: Bob's click is refused, privately.
        await bot.click(ask, ALLOW_ACTION, user="UBOB")
        await bot.slack.wait_for(lambda: len(bot.slack.ephemerals) == 1)
        assert bot.slack.ephemerals[0].user == "UBOB"
        assert "Only the person who asked" in bot.slack.ephemerals[0].text
        assert mcp_server.calls == []

        await bot.click(ask, ALLOW_ACTION)
        await bot.slack.wait_for(lambda: "Order A-17 refunded" in answer_text(bot, question.ts))
        await bot.wait_for_answers("C0001", question.ts, count=2)
        assert mcp_server.calls == [("refund_order", {"order_id": "A-17"})]
        decided = next(m for m in bot.answers("C0001", question.ts) if m.ts == ask.ts)
        assert "Allowed by <@UALICE>" in str(decided.blocks)


@all_backends
@sqlite_only
@streamed
async def test_a_call_waiting_for_approval_is_shown_as_waiting(
    make_bot: BotFactory, mcp_server: FakeMcpServer, tmp_path: Path
) -> None:
    path = refunds_need_approval(mcp_server, tmp_path)
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        bot.openai.tool_requests = [("refund_order", {"order_id": "B-2"})]
        question = await bot.mention("refund B-2")
        await approval_request(bot, question.ts)
        assert (
            "refund_order (orders) waits for your approval",
            "pending",
        ) in task_updates(bot, "C0001", question.ts)


@pytest.mark.both_slack_modes
@all_backends
@sqlite_only
@pytest.mark.parametrize("delivery", ["poll"], indirect=True)
async def test_a_denied_call_is_not_run_and_the_model_is_told(
    make_bot: BotFactory, mcp_server: FakeMcpServer, tmp_path: Path, slack_mode: SlackMode
) -> None:
    path = refunds_need_approval(mcp_server, tmp_path)
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        await servers_on(bot, slack_mode)
        bot.openai.tool_requests = [("refund_order", {"order_id": "B-2"})]
        question = await bot.mention("refund B-2")
        ask = await approval_request(bot, question.ts)
        await bot.click(ask, DENY_ACTION)
        await bot.slack.wait_for(lambda: "Echo: Alice: refund B-2" in answer_text(bot, question.ts))
        await bot.idle()
        assert mcp_server.calls == []
        assert "denied" in answer_text(bot, question.ts)


@all_backends
@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_turn_waiting_for_approval_survives_a_restart(
    slack: FakeSlack,
    openai_fake: FakeOpenAI,
    mcp_server: FakeMcpServer,
    database_url: str,
    assistant_api: str,
    tmp_path: Path,
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=database_url,
        assistant_api=assistant_api,
        DELIVERY="poll",
        MCP_SERVERS_FILE=refunds_need_approval(mcp_server, tmp_path),
        ORDERS_TOKEN="mcp-secret",
    )
    openai_fake.tool_requests = [("refund_order", {"order_id": "A-17"})]
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        question = await bot.mention("please refund A-17")
        ask = await approval_request(bot, question.ts)
        await bot.idle()
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        # A new message in the thread waits behind the pending call.
        bot.openai.tool_requests = []  # the follow-up question needs no tool
        await bot.reply("and tell me when it's done", thread_ts=question.ts)
        await bot.click(ask, ALLOW_ACTION)
        answers = await bot.wait_for_answers("C0001", question.ts, count=3)
        texts = [a.text for a in answers if a.ts != ask.ts]
        assert "Order A-17 refunded" in texts[0]
        assert texts[1].startswith("Echo:") and "tell me when it's done" in texts[1]
        assert mcp_server.calls == [("refund_order", {"order_id": "A-17"})]


# Workspace search ---------------------------------------------------------------------


async def mention_with_token(bot: BotUnderTest, text: str, token: str | None) -> SlackMessage:
    """A mention as Slack sends it to an AI app: with an action token for Real-time Search."""
    full = f"<@{bot.slack.bot_user_id}> {text}"
    message = bot.slack.add_message("C0001", user="UALICE", text=full)
    event = mention(text=full, user="UALICE", ts=message.ts)
    if token is not None:
        event["action_token"] = token
    await bot.deliver(event)
    return message


@pytest.mark.both_slack_modes
@all_backends
@sqlite_only
@pytest.mark.parametrize("delivery", ["stream", "poll"], indirect=True)
async def test_a_workspace_search_result_is_cited_with_its_permalink(
    make_bot: BotFactory, delivery: str
) -> None:
    async with make_bot(SLACK_SEARCH="true") as bot:
        bot.slack.add_channel("C0002", name="release")
        said = bot.slack.add_message("C0002", user="UBOB", text="The deploy freeze starts Friday")
        bot.slack.add_message("C0002", user="UBOB", text="lunch is at noon")
        bot.openai.tool_requests = [("search_workspace", {"query": "deploy freeze"})]
        token = bot.slack.new_action_token()
        question = await mention_with_token(bot, "when does the deploy freeze start?", token)
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
        permalink = f"https://fake-workspace.slack.com/archives/C0002/p{said.ts.replace('.', '')}"
        assert permalink in answer.text and "The deploy freeze starts Friday" in answer.text
        assert "lunch" not in answer.text
        (search,) = bot.slack.searches
        assert search["action_token"] == token and search["query"] == "deploy freeze"
        if bot.assistant_api == "responses":
            # The bot ran the function call and gave its output to a second response in the
            # same conversation.
            asked, carried_on = bot.openai.requests_to("POST", r"/v1/responses$")
            assert carried_on.body["conversation"] == asked.body["conversation"]
            (output,) = carried_on.body["input"]
            assert output["type"] == "function_call_output" and permalink in output["output"]
            assert {t["name"] for t in asked.body["tools"]} == {"slack__search_workspace"}
        if delivery != "stream":
            return
        assert task_updates(bot, "C0001", question.ts) == [
            ("search_workspace (slack)", "in_progress"),
            ("search_workspace (slack)", "complete"),
        ]
        done = [
            chunk
            for message in bot.slack.bot_replies("C0001", question.ts)
            for chunk in message.chunks
            if chunk.get("status") == "complete"
        ]
        assert {"type": "url", "url": permalink, "text": "Bob in #release"} in done[0]["sources"]


@all_backends
@sqlite_only
async def test_a_channel_answer_never_draws_on_private_or_direct_messages(
    make_bot: BotFactory,
) -> None:
    """Search acts for the asker, who may see private channels and DMs; an answer in a
    channel is read by everyone there, so only public channels are searched."""
    async with make_bot(SLACK_SEARCH="true") as bot:
        bot.slack.add_channel("C0002", name="release")
        bot.slack.add_channel("G0003", name="leadership", is_private=True)
        bot.slack.add_channel("G0004", name="mpdm-alice--bob-1", is_private=True)
        bot.slack.add_channel("D0005", user="UALICE")
        public = bot.slack.add_message("C0002", user="UBOB", text="deploy freeze: Friday")
        secrets = {
            "G0003": "deploy freeze hides the layoffs",
            "G0004": "deploy freeze, between us two",
            "D0005": "deploy freeze password is hunter2",
        }
        for channel, text in secrets.items():
            bot.slack.add_message(channel, user="UBOB", text=text)
        bot.openai.tool_requests = [("search_workspace", {"query": "deploy freeze"})]
        question = await mention_with_token(bot, "deploy freeze?", bot.slack.new_action_token())
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
        assert public.text in answer.text
        for channel, text in secrets.items():
            assert text not in answer.text and channel not in answer.text
        (search,) = bot.slack.searches
        assert search.get("channel_types") in (None, ["public_channel"], "public_channel")


def test_the_manifests_ask_for_public_search_only() -> None:
    """Only public channels are searched, so no manifest asks to read private
    conversations or files through search."""
    root = Path(__file__).resolve().parents[1]
    for manifest in sorted(root.glob("manifest*.yml")):
        scopes = set(re.findall(r"^\s*-\s*(search:[\w.]+)", manifest.read_text(), re.MULTILINE))
        assert scopes <= {"search:read.public"}, f"{manifest.name} asks for {sorted(scopes)}"


@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
@sqlite_only
@pytest.mark.parametrize("delivery", ["stream", "poll"], indirect=True)
async def test_a_search_is_not_run_again_while_openai_refuses_its_output(
    make_bot: BotFactory,
) -> None:
    async with make_bot(SLACK_SEARCH="true", TOOL_CALLS_PER_TURN="2") as bot:
        bot.slack.add_channel("C0002", name="release")
        said = bot.slack.add_message("C0002", user="UBOB", text="The deploy freeze starts Friday")
        bot.openai.tool_requests = [("search_workspace", {"query": "deploy freeze"})]
        bot.slack.hold_next("assistant.search.context", seconds=0.5)
        token = bot.slack.new_action_token()
        question = await mention_with_token(bot, "when does the deploy freeze start?", token)
        # While the search runs, OpenAI starts failing: the response carrying its output is
        # refused three times (each asking for a retry 50 ms later) before it is created.
        await bot.slack.wait_for(lambda: bool(bot.slack.calls_to("assistant.search.context")))
        bot.openai.fail_http("POST", r"/v1/responses", status=500, times=3, retry_after=0.05)
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
        permalink = f"https://fake-workspace.slack.com/archives/C0002/p{said.ts.replace('.', '')}"
        assert permalink in answer.text and "The deploy freeze starts Friday" in answer.text
        assert "limit of tool calls" not in answer.text
        assert len(bot.slack.calls_to("assistant.search.context")) == 1
        # Every attempt carried the same output; the last one was created.
        *refused, carried_on = bot.openai.requests_to("POST", r"/v1/responses$")[1:]
        assert len(refused) == 3
        assert all(r.body["input"] == carried_on.body["input"] for r in refused)


def unanswered_calls_in(openai: FakeOpenAI) -> list[str]:
    """The function calls of the fake's conversations that no output answers."""
    items = [item for c in openai.conversations.values() for item in c.items]
    answered = {i["call_id"] for i in items if i["type"] == "function_call_output"}
    return [
        i["call_id"] for i in items if i["type"] == "function_call" and i["call_id"] not in answered
    ]


@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_search_call_left_without_its_output_does_not_break_the_thread(
    make_bot: BotFactory,
) -> None:
    async with make_bot(SLACK_SEARCH="true", ANSWER_DEADLINE_S="2.5") as bot:
        bot.slack.add_message("C0001", user="UBOB", text="The deploy freeze starts Friday")
        bot.openai.tool_requests = [("search_workspace", {"query": "deploy freeze"})]
        bot.slack.hold_next("assistant.search.context", seconds=0.5)
        token = bot.slack.new_action_token()
        question = await mention_with_token(bot, "when does the deploy freeze start?", token)
        # OpenAI fails from the moment the search runs until the turn's deadline: the
        # search's output never reaches the conversation (each refusal asks for a retry 50 ms
        # later, so the retries end at the deadline rather than a backoff past it).
        await bot.slack.wait_for(lambda: bool(bot.slack.calls_to("assistant.search.context")))
        bot.openai.fail_http("POST", r"/v1/responses", status=500, times=1000, retry_after=0.05)
        (expired,) = await bot.wait_for_answers("C0001", question.ts)
        assert "took too long" in expired.text
        bot.openai.clear_failures()
        (left_open,) = unanswered_calls_in(bot.openai)

        bot.openai.tool_requests = []
        await bot.mention("and when does it end?", thread_ts=question.ts)
        answers = await bot.wait_for_answers("C0001", question.ts, count=2)
        assert answers[-1].text.startswith("Echo: Alice: and when does it end?")
        assert unanswered_calls_in(bot.openai) == []
        # The interrupted call was closed in the same request that asked the new question.
        *_, asked = bot.openai.requests_to("POST", r"/v1/responses$")
        closing, message = asked.body["input"]
        assert closing == {
            "type": "function_call_output",
            "call_id": left_open,
            "output": INTERRUPTED_TEXT,
        }
        assert message["role"] == "user"


@pytest.mark.both_slack_modes
@chat_only
@sqlite_only
async def test_workspace_search_goes_away_quietly_where_slack_does_not_allow_it(
    make_bot: BotFactory,
) -> None:
    async with make_bot(SLACK_SEARCH="true") as bot:
        bot.slack.search_error = "not_allowed_token_type"
        bot.openai.tool_requests = [("search_workspace", {"query": "deploy"})]
        first = await mention_with_token(bot, "deploy?", bot.slack.new_action_token())
        (answer,) = await bot.wait_for_answers("C0001", first.ts)
        assert answer.text.startswith("Echo: Alice: deploy?")  # answered, no error shown
        assert len(bot.slack.searches) == 1
        offered_first = bot.openai.chat_completions[0].tools
        assert "slack__search_workspace" in offered_first
        second = await mention_with_token(bot, "again?", bot.slack.new_action_token())
        await bot.wait_for_answers("C0001", second.ts)
        assert bot.openai.chat_completions[-1].tools == []  # the tool is gone
        assert len(bot.slack.searches) == 1
        # A message Slack gave no token never offers it either.
        third = await mention_with_token(bot, "and without?", None)
        await bot.wait_for_answers("C0001", third.ts)
        assert bot.openai.chat_completions[-1].tools == []


@pytest.mark.both_slack_modes
@chat_only
@sqlite_only
@pytest.mark.parametrize("delivery", ["poll"], indirect=True)
async def test_an_expired_action_token_fails_that_search_only(make_bot: BotFactory) -> None:
    """Slack's action tokens are short-lived: a message answered after its token expired
    cannot search, but the next message (with a fresh token) can."""
    async with make_bot(SLACK_SEARCH="true") as bot:
        bot.slack.add_message("C0001", user="UBOB", text="The deploy freeze starts Friday")
        bot.openai.tool_requests = [("search_workspace", {"query": "deploy freeze"})]
        stale = bot.slack.new_action_token()
        bot.slack.expire_action_token(stale)
        first = await mention_with_token(bot, "deploy freeze?", stale)
        (answer,) = await bot.wait_for_answers("C0001", first.ts)
        assert "starts Friday" not in answer.text
        assert [s["action_token"] for s in bot.slack.searches] == [stale]

        bot.openai.tool_requests = [("search_workspace", {"query": "deploy freeze"})]
        fresh = bot.slack.new_action_token()
        second = await mention_with_token(bot, "and now?", fresh)
        (answer,) = await bot.wait_for_answers("C0001", second.ts)
        assert "The deploy freeze starts Friday" in answer.text
        assert "slack__search_workspace" in bot.openai.chat_completions[-1].tools
        assert [s["action_token"] for s in bot.slack.searches] == [stale, fresh]


@pytest.mark.parametrize("assistant_api", ["chat", "threads"], indirect=True)
@sqlite_only
@pytest.mark.parametrize("delivery", ["poll"], indirect=True)
async def test_without_streaming_the_pane_status_names_the_running_tool(
    make_bot: BotFactory, mcp_server: FakeMcpServer, tmp_path: Path
) -> None:
    path = servers_file(tmp_path, orders(mcp_server))
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret") as bot:
        bot.openai.tool_requests = [("lookup_order", {"order_id": "A-17"})]
        thread = pane_thread(bot)
        await start_pane(bot, thread)
        thread_ts = await ask_in_pane(bot, thread, "where is A-17?")
        answers = await bot.wait_for_answers("D0001", thread_ts, count=2)
        assert "Order A-17: shipped" in answers[-1].text
        statuses = [c.args["status"] for c in bot.slack.calls_to("assistant.threads.setStatus")]
        assert "is using lookup_order (orders)…" in statuses
        assert statuses[-1] == ""


# Pure parts, as tables ----------------------------------------------------------------

CALL, OUTPUT = "function_call", "function_call_output"


@pytest.mark.parametrize(
    ("items", "sending", "named", "expected"),
    [
        ([(CALL, "c1")], [], "c1", ["c1"]),
        ([(CALL, "c1"), (OUTPUT, "c1"), (CALL, "c2"), (CALL, "c3")], [], "c2", ["c2", "c3"]),
        # The outputs the request itself carries answer their calls.
        ([(CALL, "c1"), (CALL, "c2")], ["c2"], "c1", ["c1"]),
        # The named call is older than the items read: it is closed too, first.
        ([(CALL, "c5")], [], "c1", ["c1", "c5"]),
        ([("message", ""), (CALL, "c1"), (CALL, "c1")], [], "c1", ["c1"]),
    ],
)
def test_which_calls_a_refused_conversation_leaves_unanswered(
    items: list[tuple[str, str]], sending: list[str], named: str, expected: list[str]
) -> None:
    assert unanswered_calls(items, sending=sending, named=named) == expected


@pytest.mark.parametrize(
    ("requester", "clicker", "decision", "overdue", "expected"),
    [
        ("UALICE", "UALICE", None, False, Click.RECORDED),
        ("UALICE", "UBOB", None, False, Click.NOT_YOURS),
        ("UALICE", "UBOB", "allow", False, Click.NOT_YOURS),
        ("UALICE", "UBOB", None, True, Click.NOT_YOURS),
        ("UALICE", "UALICE", "allow", False, Click.ALREADY_DECIDED),
        ("UALICE", "UALICE", "deny", True, Click.ALREADY_DECIDED),
        ("UALICE", "UALICE", None, True, Click.EXPIRED),
        ("UALICE", "UALICE", "expired", True, Click.EXPIRED),
        (None, "UALICE", None, False, Click.GONE),
    ],
)
def test_who_may_answer_an_approval_and_until_when(
    requester: str | None, clicker: str, decision: str | None, overdue: bool, expected: Click
) -> None:
    outcome = click_outcome(
        requester=requester, clicker=clicker, decision=decision, overdue=overdue
    )
    assert outcome is expected


@pytest.mark.parametrize(
    ("timeout_s", "words"),
    [
        (900, "15 minutes"),
        (60, "1 minute"),
        (3600, "1 hour"),
        (7200, "2 hours"),
        (90, "90 seconds"),
        (1, "1 second"),
    ],
)
def test_how_long_an_approval_waited_in_words(timeout_s: float, words: str) -> None:
    assert waited(timeout_s) == words


@pytest.mark.parametrize(
    ("approval", "expected"),
    [
        (False, "never"),
        (True, "always"),
        (("refund_order",), {"always": {"tool_names": ["refund_order"]}}),
    ],
)
def test_servers_as_remote_mcp_tools(approval: bool | tuple[str, ...], expected: object) -> None:
    server = McpServer("orders", "https://x/mcp", {"Authorization": "Bearer t"}, ("a",), approval)
    assert mcp_tool(server) == {
        "type": "mcp",
        "server_label": "orders",
        "server_url": "https://x/mcp",
        "headers": {"Authorization": "Bearer t"},
        "allowed_tools": ["a"],
        "require_approval": expected,
    }


@pytest.mark.parametrize(
    ("progress", "chunk"),
    [
        (
            ToolProgress("c1", "lookup_order (orders)", ToolStatus.IN_PROGRESS),
            {
                "type": "task_update",
                "id": "c1",
                "title": "lookup_order (orders)",
                "status": "in_progress",
            },
        ),
        (
            ToolProgress("c2", "search", ToolStatus.COMPLETE, (ToolSource("https://s/1", "Bob"),)),
            {
                "type": "task_update",
                "id": "c2",
                "title": "search",
                "status": "complete",
                "sources": [{"type": "url", "url": "https://s/1", "text": "Bob"}],
            },
        ),
    ],
)
def test_tool_progress_as_slack_task_updates(progress: ToolProgress, chunk: object) -> None:
    assert task_update_chunk(progress) == chunk


@pytest.mark.parametrize(
    ("error", "reach"),
    [
        ("missing_scope", Refused.WORKSPACE),
        ("not_allowed_token_type", Refused.WORKSPACE),
        ("feature_not_enabled", Refused.WORKSPACE),
        ("team_not_allowed", Refused.WORKSPACE),
        ("invalid_action_token", Refused.THIS_SEARCH),
        ("ratelimited", Refused.THIS_SEARCH),
        ("token_revoked", Refused.THIS_SEARCH),
        ("internal_error", Refused.THIS_SEARCH),
    ],
)
def test_how_far_a_refused_search_reaches(error: str, reach: Refused) -> None:
    assert refused(error) is reach


def test_search_hits_keep_their_permalinks() -> None:
    response = {
        "results": {
            "messages": [
                {
                    "author_name": "Bob",
                    "channel_name": "release",
                    "permalink": "https://w/archives/C2/p1",
                    "content": "freeze on Friday",
                },
                {"author_name": "Eve", "content": "no permalink: not citable"},
            ]
        }
    }
    hits = parse_hits(response)
    assert hits == [Hit("Bob", "release", "https://w/archives/C2/p1", "freeze on Friday")]
    assert hits_text(hits) == "- Bob in #release (https://w/archives/C2/p1): freeze on Friday"
    assert hits_text([]) == "No messages found."


@chat_only
@sqlite_only
@pytest.mark.parametrize("delivery", ["poll"], indirect=True)
async def test_calls_past_the_cap_and_calls_past_the_time_limit_reach_the_model_as_errors(
    make_bot: BotFactory, mcp_server: FakeMcpServer, tmp_path: Path
) -> None:
    path = servers_file(tmp_path, orders(mcp_server))
    settings = {"TOOL_CALLS_PER_TURN": "2", "TOOL_TIMEOUT_S": "1"}
    async with make_bot(MCP_SERVERS_FILE=path, ORDERS_TOKEN="mcp-secret", **settings) as bot:
        bot.openai.tool_requests = [
            ("slow_lookup", {"order_id": "A-17"}),
            ("lookup_order", {"order_id": "B-2"}),
            ("lookup_order", {"order_id": "A-17"}),
        ]
        question = await bot.mention("check all three")
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
        assert answer.text.startswith("Echo: Alice: check all three")
        assert "error: the tool did not answer within 1 seconds" in answer.text
        assert "Order B-2: waiting for stock" in answer.text
        assert "limit of tool calls for this answer is reached" in answer.text
        assert [name for name, _ in mcp_server.calls] == ["slow_lookup", "lookup_order"]
        # Past the cap, the model is asked to answer without tools.
        assert bot.openai.chat_completions[-1].tools == []
