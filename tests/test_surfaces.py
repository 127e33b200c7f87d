"""Slack's assistant pane, feedback buttons and the App Home tab."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from bot.conversation import FEEDBACK_THANKS
from bot.settings import DEFAULT_GREETING, DEFAULT_PROMPTS
from bot.store.models import Feedback
from bot.turns.delivery import STATUS_TEXT
from tests.conftest import ON_ONE_BACKEND, ON_SQLITE, BotFactory
from tests.fakes.events import dm_message, signed_headers
from tests.harness import SIGNING_SECRET, BotUnderTest


def pane_thread(bot: BotUnderTest, *, context_channel: str | None = None) -> dict[str, object]:
    thread_ts = bot.slack.new_ts()
    context = {"channel_id": context_channel, "team_id": "T0001"} if context_channel else {}
    return {
        "user_id": "UALICE",
        "context": context,
        "channel_id": "D0001",
        "thread_ts": thread_ts,
    }


async def start_pane(bot: BotUnderTest, thread: dict[str, object]) -> None:
    event = {
        "type": "assistant_thread_started",
        "assistant_thread": thread,
        "event_ts": thread["thread_ts"],
    }
    assert await bot.deliver(event) == 200


async def ask_in_pane(bot: BotUnderTest, thread: dict[str, object], text: str) -> str:
    thread_ts = str(thread["thread_ts"])
    message = bot.slack.add_message("D0001", user="UALICE", text=text, thread_ts=thread_ts)
    await bot.deliver(dm_message(text=text, user="UALICE", ts=message.ts, thread_ts=thread_ts))
    return thread_ts


@ON_SQLITE
@ON_ONE_BACKEND
async def test_pane_greets_with_suggested_prompts(bot: BotUnderTest) -> None:
    thread = pane_thread(bot)
    await start_pane(bot, thread)
    await bot.slack.wait_for(
        lambda: bool(bot.slack.calls_to("assistant.threads.setSuggestedPrompts"))
    )
    greeting = bot.slack.bot_replies("D0001", str(thread["thread_ts"]))
    assert [m.text for m in greeting] == [DEFAULT_GREETING]
    (call,) = bot.slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert [p["message"] for p in call.args["prompts"]] == list(DEFAULT_PROMPTS)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_pane_prompts_are_configurable(make_bot: BotFactory) -> None:
    async with make_bot(
        ASSISTANT_SUGGESTED_PROMPTS="Draft a release note|Explain our on-call"
    ) as bot:
        await start_pane(bot, pane_thread(bot))
        await bot.slack.wait_for(
            lambda: bool(bot.slack.calls_to("assistant.threads.setSuggestedPrompts"))
        )
        (call,) = bot.slack.calls_to("assistant.threads.setSuggestedPrompts")
        assert [p["title"] for p in call.args["prompts"]] == [
            "Draft a release note",
            "Explain our on-call",
        ]


@pytest.mark.both_slack_modes
@ON_SQLITE
@ON_ONE_BACKEND
async def test_pane_shows_thinking_status_sets_title_and_answers(bot: BotUnderTest) -> None:
    thread = pane_thread(bot)
    await start_pane(bot, thread)
    thread_ts = await ask_in_pane(bot, thread, "How do I rotate my API key?")
    answers = await bot.wait_for_answers("D0001", thread_ts, count=2)
    assert answers[-1].text == "Echo: How do I rotate my API key?"
    statuses = [c.args["status"] for c in bot.slack.calls_to("assistant.threads.setStatus")]
    assert statuses[0] == STATUS_TEXT and statuses[-1] == ""
    (title,) = bot.slack.calls_to("assistant.threads.setTitle")
    assert title.args["title"] == "How do I rotate my API key?"


@ON_SQLITE
async def test_pane_passes_the_channel_in_view_to_the_assistant(bot: BotUnderTest) -> None:
    seen: list[str] = []
    bot.openai.reply = lambda texts: seen.append(texts[-1]) or "ok"
    thread = pane_thread(bot)
    await start_pane(bot, thread)
    changed = {**thread, "context": {"channel_id": "CVIEW", "team_id": "T0001"}}
    await bot.deliver(
        {"type": "assistant_thread_context_changed", "assistant_thread": changed, "event_ts": "1"}
    )
    thread_ts = await ask_in_pane(bot, thread, "summarise this channel")
    await bot.wait_for_answers("D0001", thread_ts, count=2)
    assert "<#CVIEW>" in seen[0] and "summarise this channel" in seen[0]


async def click(
    bot: BotUnderTest, *, action_id: str, value: str, user: str, answer_ts: str, thread_ts: str
) -> int:
    payload = {
        "type": "block_actions",
        "team": {"id": "T0001"},
        "user": {"id": user},
        "api_app_id": "A0001",
        "channel": {"id": "C0001"},
        "container": {"type": "message", "message_ts": answer_ts, "channel_id": "C0001"},
        "message": {"ts": answer_ts, "thread_ts": thread_ts, "text": "answer"},
        "trigger_id": "1.2.3",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "feedback",
                "value": value,
                "type": "button",
                "action_ts": str(time.time()),
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = signed_headers(body, signing_secret=SIGNING_SECRET)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with bot.http.post(bot.events_url, data=body, headers=headers) as response:
        return response.status


@pytest.mark.both_slack_modes
@ON_ONE_BACKEND
async def test_feedback_buttons_are_stored_per_user_and_thanked(bot: BotUnderTest) -> None:
    question = await bot.mention("rate me")
    (answer,) = await bot.wait_for_answers("C0001", question.ts)
    buttons = answer.blocks[-1]["elements"]
    assert [b["text"]["text"] for b in buttons] == ["👍", "👎"]
    up, down = buttons
    for button, user in [(up, "UALICE"), (down, "UBOB"), (up, "UBOB")]:
        status = await click(
            bot,
            action_id=button["action_id"],
            value=button["value"],
            user=user,
            answer_ts=answer.ts,
            thread_ts=question.ts,
        )
        assert status == 200
    await bot.slack.wait_for(lambda: len(bot.slack.ephemerals) == 3)
    assert bot.slack.ephemerals[0].text == FEEDBACK_THANKS
    assert bot.bot is not None
    async with bot.bot.engine.connect() as connection:
        votes = (await connection.execute(select(Feedback.user_id, Feedback.value))).tuples().all()
    assert sorted(votes) == [("UALICE", "up"), ("UBOB", "up")]


@ON_SQLITE
@ON_ONE_BACKEND
async def test_app_home_explains_the_bot(bot: BotUnderTest) -> None:
    assert (
        await bot.deliver(
            {"type": "app_home_opened", "user": "UALICE", "channel": "D0001", "tab": "home"}
        )
        == 200
    )
    await bot.slack.wait_for(lambda: "UALICE" in bot.slack.home_views)
    view = bot.slack.home_views["UALICE"]
    text = json.dumps(view)
    assert view["type"] == "home" and "mention me" in text
