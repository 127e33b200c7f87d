"""Slack's Agent messaging experience (the default; `agent_view` in the manifests): opening
the DM greets once with suggested prompts, the channel in view follows the person,
and each top-level DM is its own thread with status, title and a streamed answer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.listeners.agent import viewed_channel
from bot.store.models import Conversation
from tests.fakes.events import event_envelope
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest, SlackMode, bot_env

GREETING = "Hello there, ask me anything."


@contextlib.asynccontextmanager
async def agent_bot(
    slack: FakeSlack,
    openai: FakeOpenAI,
    database_url: str,
    slack_mode: SlackMode = SlackMode.TOKEN,
    **extra: str,
) -> AsyncIterator[BotUnderTest]:
    env = bot_env(
        slack=slack,
        openai=openai,
        database_url=database_url,
        assistant_api="responses",
        slack_mode=slack_mode,
        ASSISTANT_GREETING=GREETING,  # the agent view is the default (SLACK_AGENT_VIEW)
        **extra,
    )
    async with BotUnderTest.running(
        env, slack=slack, openai=openai, install_first=slack_mode.oauth, slack_mode=slack_mode
    ) as bot:
        yield bot


def dm_opened(user: str = "UALICE", channel: str = "D0001") -> dict[str, Any]:
    return {"type": "app_home_opened", "user": user, "channel": channel, "tab": "messages"}


def context_changed(channel: str | None, user: str = "UALICE") -> dict[str, Any]:
    entities = [{"type": "slack#/types/channel_id", "value": channel, "team_id": "T0001"}]
    return {
        "type": "app_context_changed",
        "user": user,
        "context": {"entities": entities} if channel else {},
    }


def test_the_channel_in_view_is_the_most_relevant_channel_entity() -> None:
    cases: list[tuple[dict[str, Any], str | None]] = [
        (context_changed("C0001"), "C0001"),
        (context_changed(None), None),
        (
            {
                "context": {
                    "entities": [
                        {"type": "slack#/types/canvas_id", "value": "F1"},
                        {"type": "slack#/types/channel_id", "value": "C9"},
                        {"type": "slack#/types/channel_id", "value": "C8"},
                    ]
                }
            },
            "C9",
        ),
        ({}, None),
    ]
    for event, expected in cases:
        assert viewed_channel(event) == expected


async def test_opening_the_dm_greets_once_with_the_suggested_prompts(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    async with agent_bot(slack, openai_fake, database_url) as bot:
        assert await bot.deliver(dm_opened()) == 200
        assert await bot.deliver(dm_opened()) == 200
        greetings = [m for m in slack.bot_messages() if m.text == GREETING]
        assert [m.channel for m in greetings] == ["D0001"]
        prompts = slack.calls_to("assistant.threads.setSuggestedPrompts")
        assert len(prompts) == 2 and all(c.ok for c in prompts)
        assert prompts[0].args["channel_id"] == "D0001"
        assert "thread_ts" not in prompts[0].args
        # The Home tab is still the admin/user view, not a greeting.
        assert await bot.deliver({**dm_opened(), "tab": "home"}) == 200
        assert len([m for m in slack.bot_messages() if m.text == GREETING]) == 1
        assert "UALICE" in slack.home_views


@pytest.mark.both_slack_modes
async def test_each_dm_is_its_own_thread_with_status_title_and_the_channel_in_view(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str, slack_mode: SlackMode
) -> None:
    async with agent_bot(slack, openai_fake, database_url, slack_mode) as bot:
        await bot.deliver(dm_opened())
        await bot.deliver(context_changed("C0001"))
        first = await bot.dm("what is going on here?")
        second = await bot.dm("and something else")
        [answer_one] = await bot.wait_for_answers("D0001", first.ts)
        [answer_two] = await bot.wait_for_answers("D0001", second.ts)
        # Each answer is in the thread of its own message.
        assert answer_one.thread_ts == first.ts and answer_two.thread_ts == second.ts
        assert "what is going on here?" in answer_one.text
        statuses = slack.calls_to("assistant.threads.setStatus")
        assert {c.args["thread_ts"] for c in statuses if c.args.get("status")} == {
            first.ts,
            second.ts,
        }
        titles = {
            c.args["thread_ts"]: c.args["title"]
            for c in slack.calls_to("assistant.threads.setTitle")
        }
        assert titles == {first.ts: "what is going on here?", second.ts: "and something else"}
        assert [c.args["channel"] for c in slack.calls_to("chat.startStream")] == [
            "D0001",
            "D0001",
        ]
        asked = [json.dumps(r.body) for r in openai_fake.requests_to("POST", r"/v1/responses")]
        assert asked and all("<#C0001>" in body for body in asked)
        assert bot.bot is not None
        async with bot.bot.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(Conversation.thread_ts, Conversation.surface).order_by(
                        Conversation.thread_ts
                    )
                )
            ).all()
        assert rows == [(first.ts, "assistant"), (second.ts, "assistant")]


async def test_without_the_agent_view_a_dm_stays_a_plain_dm(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    """An app that still has the assistant pane (SLACK_AGENT_VIEW=false)."""
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=database_url,
        assistant_api="responses",
        SLACK_AGENT_VIEW="false",
    )
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        await bot.deliver(event_envelope(dm_opened())["event"])
        assert slack.calls_to("assistant.threads.setSuggestedPrompts") == []
        message = await bot.dm("hello")
        await bot.wait_for_answers("D0001", message.ts)
        assert slack.calls_to("assistant.threads.setStatus") == []
