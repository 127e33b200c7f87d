"""See the bot work without Slack or OpenAI accounts: `python -m tests.demo`.

Starts the fake Slack, the fake OpenAI and a small MCP tool server, runs the real bot
(`python -m bot`, HTTP mode, Slack's agent view) against them, plays a few conversations with
signed events, and prints each Slack thread as a user would see it, with how each answer
arrived (streamed pieces, task updates, buttons). `--html demo.html` draws the same threads
as a Slack-like page.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from bot.tools.approvals import ALLOW_ACTION
from tests.demo_render import (
    BOT_NAME,
    Button,
    Demo,
    Markup,
    Message,
    Task,
    TaskStatus,
    Thread,
    render_html,
    render_text,
)
from tests.fakes.mcp_server import FakeMcpServer
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack, SlackCall, SlackMessage
from tests.harness import RUN_STARTS, BotProcess, Conversations, bot_env

SUPPORT_INSTRUCTIONS = "You help customers. Be warm, and end with a link to status.example.com."
BACKENDS = ("responses", "threads", "chat")
DELIVERIES = ("stream", "poll")


def scripted_model(user_texts: list[str]) -> str:
    last = user_texts[-1].split(": ", 1)[-1]
    if "deploy" in last:
        steps = "1. Merge to `main`\n2. Wait for CI\n3. Run `make release`"
        return f"**Deploying** takes three steps:\n\n{steps}"
    if "rollback" in last.lower():
        return "Run `make rollback` — it restores the previous release in about a minute."
    if "order" in last.lower():
        return "I asked the **orders** system:"
    return f"You asked: _{last}_ — here is a short answer."


# Reading what Slack shows ----------------------------------------------------------------


def message_view(message: SlackMessage, names: Mapping[str, str]) -> Message:
    """A message as Slack draws it: blocks when it has them, else its text, in the markup
    it was sent in (a streamed answer's `markdown_text` is Markdown)."""
    is_bot = message.bot_id is not None
    sections = [b for b in message.blocks or [] if b.get("type") == "section"]
    if sections:
        text, markup = "\n".join(b["text"]["text"] for b in sections), Markup.MRKDWN
    elif message.markdown_text is not None:
        text, markup = message.markdown_text, Markup.MARKDOWN
    else:
        text, markup = message.text, Markup.MRKDWN
    return Message(
        author=BOT_NAME if is_bot else names.get(message.user or "", message.user or "?"),
        ts=message.ts,
        text=text,
        markup=markup,
        is_bot=is_bot,
        buttons=tuple(buttons_of(message.blocks or [])),
        context=tuple(context_of(message.blocks or [])),
        tasks=tuple(tasks_of(message.chunks)),
        steps=tuple(step for call in message.calls for step in steps_of(call)),
    )


def buttons_of(blocks: Iterable[dict[str, Any]]) -> Iterable[Button]:
    for block in blocks:
        if block.get("type") == "actions":
            for element in block.get("elements") or []:
                if element.get("type") == "button":
                    yield Button(str(element["text"]["text"]), element.get("style"))


def context_of(blocks: Iterable[dict[str, Any]]) -> Iterable[str]:
    for block in blocks:
        if block.get("type") == "context":
            yield " ".join(str(e.get("text", "")) for e in block.get("elements") or [])


def tasks_of(chunks: Iterable[dict[str, Any]]) -> Iterable[Task]:
    """Task updates grouped by task, in the order they first appeared."""
    seen: dict[str, tuple[str, list[TaskStatus]]] = {}
    for chunk in chunks:
        if chunk.get("type") == "task_update":
            _, statuses = seen.setdefault(str(chunk["id"]), (str(chunk["title"]), []))
            status = TaskStatus(chunk["status"])
            if not statuses or statuses[-1] is not status:
                statuses.append(status)
    return [Task(title, tuple(statuses)) for title, statuses in seen.values()]


def steps_of(call: SlackCall) -> Iterable[str]:
    """One Web API call that made or changed a message, in a few words."""
    method = call.method.removeprefix("chat.")
    words = call.args.get("markdown_text")
    if method == "appendStream":
        if words:
            yield "+" + _quoted(str(words))
        for chunk in call.args.get("chunks") or []:
            if chunk.get("type") == "task_update":
                yield f"task {chunk['status']}"
        return
    words = words or call.args.get("text")
    extra = " " + _quoted(str(words)) if words else ""
    if call.args.get("blocks") and method == "stopStream":
        extra += " + buttons"
    yield method + extra


def _quoted(words: str, limit: int = 18) -> str:
    short = words if len(words) <= limit else words[: limit - 1] + "…"
    return json.dumps(short, ensure_ascii=False)


def thread_view(
    slack: FakeSlack, channel: str, ts: str, title: str, names: Mapping[str, str], note: str = ""
) -> Thread:
    statuses = [
        str(c.args["status"])
        for c in slack.calls_to("assistant.threads.setStatus")
        if c.ok and c.args.get("thread_ts") == ts and c.args.get("status")
    ]
    return Thread(
        title=title,
        messages=tuple(message_view(m, names) for m in slack.thread(channel, ts)),
        statuses=tuple(dict.fromkeys(statuses)),
        note=note,
    )


def suggested_prompts(slack: FakeSlack, channel: str) -> tuple[str, ...]:
    for call in slack.calls_to("assistant.threads.setSuggestedPrompts"):
        if call.ok and call.args.get("channel_id") == channel:
            return tuple(str(p["title"]) for p in call.args.get("prompts") or [])
    return ()


# Playing the conversations -----------------------------------------------------------------


async def approval_asked(slack: FakeSlack, channel: str, ts: str) -> SlackMessage:
    def asking() -> SlackMessage | None:
        for message in slack.bot_replies(channel, ts):
            for block in message.blocks or []:
                if any(e.get("action_id") == ALLOW_ACTION for e in block.get("elements") or []):
                    return message
        return None

    await slack.wait_for(lambda: asking() is not None, timeout=30)
    found = asking()
    assert found is not None
    return found


async def play(
    talk: Conversations, slack: FakeSlack, openai: FakeOpenAI, names: Mapping[str, str]
) -> list[Thread]:
    threads: list[Thread] = []
    question = await talk.mention("how do we deploy?")
    await talk.wait_for_answers("C0001", question.ts)
    await talk.reply("and if it breaks?  rollback?", thread_ts=question.ts, user="UBOB")
    await talk.wait_for_answers("C0001", question.ts, count=2)
    threads.append(
        thread_view(slack, "C0001", question.ts, "#general", names, "an answer and a follow-up")
    )

    # Slack's agent view: opening the app's Messages tab greets with suggested prompts.
    opened = {"type": "app_home_opened", "user": "UALICE", "channel": "D0001", "tab": "messages"}
    await talk.deliver(opened)

    def greeted() -> list[SlackMessage]:
        return [m for m in slack.bot_messages() if m.channel == "D0001"]

    await slack.wait_for(lambda: bool(greeted()), timeout=30)
    greeting = greeted()[0]
    threads.append(
        Thread(
            title=f"Messages with {BOT_NAME}",
            messages=(message_view(greeting, names),),
            prompts=suggested_prompts(slack, "D0001"),
            note="the agent view's greeting, once",
        )
    )
    dm = await talk.dm("what's on my plate today?")
    await talk.wait_for_answers("D0001", dm.ts)
    threads.append(
        thread_view(slack, "D0001", dm.ts, f"Messages with {BOT_NAME}", names, "each DM a thread")
    )

    # A tool (an MCP server), shown live as task updates.
    openai.tool_requests = [("lookup_order", {"order_id": "A-17"})]
    lookup = await talk.mention("where is order A-17?", channel="C0003")
    await talk.wait_for_answers("C0003", lookup.ts)
    threads.append(thread_view(slack, "C0003", lookup.ts, "#orders", names, "a tool call"))

    # A tool that needs the asker's approval first.
    openai.tool_requests = [("refund_order", {"order_id": "A-17"})]
    refund = await talk.mention("please refund order A-17", channel="C0003")
    ask = await approval_asked(slack, "C0003", refund.ts)
    waiting = thread_view(slack, "C0003", refund.ts, "#orders", names, "waiting for approval")
    threads.append(copy.deepcopy(waiting))
    await talk.click(ask, ALLOW_ACTION)
    await slack.wait_for(
        lambda: any("refunded" in m.text for m in slack.bot_replies("C0003", refund.ts)),
        timeout=30,
    )
    await talk.wait_for_answers("C0003", refund.ts, count=2)
    openai.tool_requests = []
    threads.append(thread_view(slack, "C0003", refund.ts, "#orders", names, "after Allow"))

    # An admin gives #support its own instructions with /assistant.
    command = f"instructions {SUPPORT_INSTRUCTIONS}"
    _, ack = await talk.command(command, user="UADA", channel="C0002")
    support = await talk.mention("a customer can't log in", channel="C0002")
    await talk.wait_for_answers("C0002", support.ts)
    last_run = openai.requests_to("POST", RUN_STARTS)[-1].body
    told = last_run.get("instructions") or last_run.get("additional_instructions") or ""
    if not told:  # chat completions: the channel's instructions are in the system message
        told = next(
            (m["content"] for m in last_run.get("messages", []) if m["role"] == "system"), ""
        )
    acked = Message(
        author=BOT_NAME,
        ts=support.ts,
        text=str(ack.get("text")),
        is_bot=True,
        context=(f"Ada typed `/assistant {command}`",),
        only_visible_to="Ada",
    )
    support_thread = thread_view(slack, "C0002", support.ts, "#support", names)
    threads.append(
        Thread(
            title="#support",
            messages=(acked, *support_thread.messages),
            note=f"its own instructions; the model was told: {str(told)[:90]!r}",
        )
    )
    return threads


async def demo(backend: str, delivery: str, *, model_s: float = 2.4) -> Demo:
    """Play the scenes against the real bot on `backend`; the threads as Slack shows them.

    Answers take `model_s` to write, in six pieces: 2.4 s is long enough for a person to see
    them streamed; tests that only read the transcript pass less."""
    slack, openai, tools = FakeSlack(), FakeOpenAI(run_s=model_s), FakeMcpServer()
    openai.stream_chunks = 6
    await slack.start()
    await openai.start()
    await tools.start()
    logging.getLogger().setLevel(logging.WARNING)  # the servers' access logs are not the demo
    people = {"UALICE": "Alice", "UBOB": "Bob", "UADA": "Ada"}
    for user, name in people.items():
        slack.add_user(user, display_name=name, is_admin=name == "Ada")
    slack.add_channel("C0002", name="support")
    slack.add_channel("C0003", name="orders")
    names = {**people, slack.bot_user_id: BOT_NAME, "C0002": "support", "C0003": "orders"}
    names["C0001"] = "general"
    openai.reply = scripted_model
    with tempfile.TemporaryDirectory() as workdir:
        servers = Path(workdir) / "mcp.json"
        orders = {
            "label": "orders",
            "url": tools.url,
            "token_env": "ORDERS_TOKEN",
            "require_approval": ["refund_order"],
        }
        servers.write_text(json.dumps({"servers": [orders]}))
        env = bot_env(
            slack=slack,
            openai=openai,
            database_url=f"sqlite:///{workdir}/demo.db",
            assistant_api=backend,
            DELIVERY=delivery,
            SLACK_AGENT_VIEW="true",
            MCP_SERVERS_FILE=str(servers),
            ORDERS_TOKEN=tools.token,
        )
        bot = BotProcess(env)
        bot.start()
        try:
            await bot.wait_ready()
            async with aiohttp.ClientSession() as http:
                talk = Conversations(bot.events_url, slack, openai, http)
                threads = await play(talk, slack, openai, names)
        finally:
            bot.stop()
            await tools.stop()
            await slack.stop()
            await openai.stop()
    return Demo(
        heading=f"{backend} backend, {delivery} delivery", threads=tuple(threads), names=names
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="responses")
    parser.add_argument("--delivery", choices=DELIVERIES, default="stream")
    parser.add_argument("--html", type=Path, metavar="FILE", help="also draw the threads here")
    args = parser.parse_args()
    shown = asyncio.run(demo(args.backend, args.delivery))
    print(render_text(shown))
    if args.html is not None:
        args.html.write_text(render_html(shown), encoding="utf-8")


if __name__ == "__main__":
    main()
