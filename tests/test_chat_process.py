"""The chat backend as a real process: a crash between the model's answer and posting it."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select

from bot.settings import database_url as async_database_url
from bot.store.chat_models import ChatMessage
from bot.store.db import create_engine
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import bot_env, nothing_left
from tests.test_process import crashable_bot

pytestmark = pytest.mark.slow


async def wait_for_stored_answer(url: str, timeout: float = 15.0) -> None:
    """Until the chat backend has stored the model's answer (the run is done)."""
    engine = create_engine(async_database_url(url))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with engine.connect() as connection:
                stored = await connection.scalar(
                    select(func.count())
                    .select_from(ChatMessage)
                    .where(ChatMessage.role == "assistant")
                )
            if stored:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the bot never stored an answer")
    finally:
        await engine.dispose()


async def test_kill_9_between_the_answer_and_posting_it_posts_the_stored_answer(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    """The model answered and the answer was stored, but the process died before posting it
    (Slack rate-limits the answer's post for long enough): the restarted bot posts the stored
    answer, once, without asking the model again."""
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=database_url,
        assistant_api="chat",
        DELIVERY="poll",
    )
    openai_fake.run_s = 0.5
    slack.fail_next("chat.update", status=429, retry_after=30)
    async with crashable_bot(env, slack, openai_fake) as bot:
        question = await bot.talk.mention("answer me once")
        await wait_for_stored_answer(database_url)
        await slack.wait_for(lambda: any(c.status == 429 for c in slack.calls_to("chat.update")))
        assert bot.talk.answers("C0001", question.ts) == []
        bot.kill()
        await bot.restart()
        await bot.talk.wait_for_answers("C0001", question.ts, timeout=60)
        await nothing_left(database_url)
        texts = [a.text for a in bot.talk.answers("C0001", question.ts)]
        assert texts == ["Echo: Alice: answer me once"]
        assert len(openai_fake.requests_to("POST", r"/v1/chat/completions")) == 1
