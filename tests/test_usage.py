"""`python -m bot usage` adds up exactly what the API reported, as CSV and JSON."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.store.models import Conversation, InboxMessage, Turn
from tests.conftest import BotFactory
from tests.fakes.openai_api import FakeOpenAI
from tests.harness import ROOT, BotUnderTest

pytestmark = pytest.mark.slow  # runs `python -m bot usage`


async def reported_usage(openai: FakeOpenAI, thread_id: str, run_id: str) -> dict[str, int]:
    """The usage object the fake API reports for a run or response, read over HTTP."""
    path = (
        f"/threads/{thread_id}/runs/{run_id}"
        if run_id.startswith("run_")
        else (f"/responses/{run_id}")
    )
    headers = {"Authorization": f"Bearer {openai.api_key}", "OpenAI-Beta": "assistants=v2"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(openai.base_url.rstrip("/") + path, headers=headers) as response,
    ):
        usage = (await response.json())["usage"]
    if "prompt_tokens" in usage:  # Assistants runs
        return {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}
    return {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"]}


async def expected_by_user(bot: BotUnderTest) -> dict[str, dict[str, int]]:
    assert bot.bot is not None
    async with bot.bot.engine.connect() as connection:
        turns = (
            await connection.execute(
                select(Turn.id, Turn.remote_run_id, Conversation.remote_id)
                .join(Conversation, Conversation.id == Turn.conversation_id)
                .where(Turn.outcome == "completed")
            )
        ).all()
        users = dict(
            (await connection.execute(select(InboxMessage.turn_id, InboxMessage.user_id))).all()
        )
    totals: dict[str, dict[str, int]] = defaultdict(
        lambda: {"answers": 0, "input_tokens": 0, "output_tokens": 0}
    )
    for turn_id, run_id, thread_id in turns:
        usage = await reported_usage(bot.openai, thread_id, run_id)
        entry = totals[users[turn_id]]
        entry["answers"] += 1
        entry["input_tokens"] += usage["input_tokens"]
        entry["output_tokens"] += usage["output_tokens"]
    return dict(totals)


def run_usage(env: Mapping[str, str], *args: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "usage", *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# What each backend reports as a turn's usage is checked in tests/test_turn_usage.py (every
# backend) and tests/test_chat.py; here the command adds up what is stored, so one backend
# (responses: its model has a price) on each database (the sums and days are SQL).
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_usage_adds_up_exactly_as_csv_and_json(
    make_bot: BotFactory, assistant_api: str
) -> None:
    questions = [
        ("UALICE", "C0001", "How do we deploy the service to production?"),
        ("UBOB", "C0001", "And how do we roll back?"),
        ("UALICE", "C0002", "What is the on-call rotation this week, please?"),
    ]
    async with make_bot(OPENAI_MODEL="gpt-5-mini") as bot:
        for user, channel, text in questions:
            message = await bot.mention(text, user=user, channel=channel)
            await bot.wait_for_answers(channel, message.ts)
        expected = await expected_by_user(bot)
        env = {
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": "unused",
            "OPENAI_API_KEY": "sk-unused",
            "ASSISTANT_API": bot.assistant_api,
            "OPENAI_ASSISTANT_ID": "asst_test",
            "DATABASE_URL": bot.bot.settings.database_url if bot.bot else "",
        }

    assert sum(e["answers"] for e in expected.values()) == 3
    # Four separate runs of the command, side by side: each only reads.
    by_user_csv, by_channel_json, table, empty = await asyncio.gather(
        asyncio.to_thread(run_usage, env, "--by", "user", "--format", "csv"),
        asyncio.to_thread(run_usage, env, "--by", "channel", "--format", "json"),
        asyncio.to_thread(run_usage, env, "--by", "day"),
        asyncio.to_thread(run_usage, env, "--until", "2000-01-01"),
    )
    rows = list(csv.DictReader(io.StringIO(by_user_csv)))
    got = {
        row["user"]: {
            "answers": int(row["answers"]),
            "input_tokens": int(row["input_tokens"]),
            "output_tokens": int(row["output_tokens"]),
        }
        for row in rows
    }
    assert got == expected

    by_channel: list[dict[str, Any]] = json.loads(by_channel_json)
    assert {row["channel"]: row["answers"] for row in by_channel} == {"C0001": 2, "C0002": 1}
    assert sum(row["input_tokens"] for row in by_channel) == sum(
        e["input_tokens"] for e in expected.values()
    )
    # Costs: on the responses backend the model is gpt-5-mini, which has a price.
    if env["ASSISTANT_API"] == "responses":
        assert all(row["cost_usd"] > 0 and row["unpriced_answers"] == 0 for row in by_channel)

    assert "TOTAL" in table and "answers" in table.splitlines()[0]
    assert "No usage recorded" in empty
