"""`python -m bot purge`: old conversations are forgotten here and at OpenAI."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.listeners.feedback import FEEDBACK_GONE
from bot.retention import purge
from bot.store.chat_models import ChatMessage
from bot.store.models import Conversation, InboxMessage
from tests.harness import BotUnderTest
from tests.test_surfaces import click
from tests.warm_start import run_module


async def _count(bot: BotUnderTest, model: type) -> int:
    assert bot.bot is not None
    async with bot.bot.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(model)) or 0)


async def test_purge_deletes_old_conversations_and_their_remote_threads(bot: BotUnderTest) -> None:
    question = await bot.mention("remember me?")
    await bot.wait_for_answers("C0001", question.ts)
    await bot.idle()
    assert bot.bot is not None
    settings = bot.bot.settings
    assert await purge(settings, older_than_days=1) == 0
    assert await _count(bot, Conversation) == 1
    if bot.assistant_api == "chat":
        assert await _count(bot, ChatMessage) == 2
    assert await purge(settings, older_than_days=0) == 1
    assert await _count(bot, Conversation) == 0
    assert await _count(bot, InboxMessage) == 0
    if bot.assistant_api == "chat":  # the bot was the thread: its messages go too
        assert await _count(bot, ChatMessage) == 0
        return
    deleted = bot.openai.requests_to("DELETE", r"/v1/(threads|conversations)/[^/]+")
    assert len(deleted) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_purge_command_line(bot: BotUnderTest) -> None:
    assert bot.bot is not None
    settings = bot.bot.settings
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": settings.slack_bot_token,
        "SLACK_SIGNING_SECRET": settings.slack_signing_secret,
        "OPENAI_API_KEY": settings.openai_api_key,
        "OPENAI_BASE_URL": settings.openai_base_url or "",
        "ASSISTANT_API": settings.assistant_api,
        "OPENAI_ASSISTANT_ID": settings.openai_assistant_id or "",
        "DATABASE_URL": settings.database_url,
    }
    result = await asyncio.to_thread(
        run_module, "bot", ["purge", "--older-than-days", "30"], env=env, cwd=Path.cwd(), timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "deleted 0 conversation(s) idle for more than 30 days" in result.stdout


@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_feedback_on_a_purged_answer_gets_a_polite_note(bot: BotUnderTest) -> None:
    question = await bot.mention("rate me later")
    (answer,) = await bot.wait_for_answers("C0001", question.ts)
    up = answer.blocks[-1]["elements"][0]
    assert bot.bot is not None
    assert await purge(bot.bot.settings, older_than_days=0) == 1
    status = await click(
        bot,
        action_id=up["action_id"],
        value=up["value"],
        user="UALICE",
        answer_ts=answer.ts,
        thread_ts=question.ts,
    )
    assert status == 200
    await bot.slack.wait_for(lambda: len(bot.slack.ephemerals) == 1)
    note = bot.slack.ephemerals[0]
    assert note.text == FEEDBACK_GONE
    assert note.user == "UALICE"
