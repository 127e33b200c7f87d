"""`python -m bot usage` adds up exactly what the API reported, as CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.__main__ import build_parser
from bot.admin.cli import usage_report
from bot.settings import database_url as async_database_url
from bot.store.models import Conversation, InboxMessage, Turn
from tests.conftest import BotFactory
from tests.fakes.openai_api import FakeOpenAI
from tests.harness import BotUnderTest


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


async def usage_of(database_url: str, *args: str) -> str:
    """What `python -m bot usage ARGS` prints, made in this process (the command itself, as a
    process that needs only DATABASE_URL, is tests/test_maintenance.py's)."""
    return await usage_report(
        async_database_url(database_url), build_parser().parse_args(["usage", *args])
    )


# What each backend reports as a turn's usage is checked in tests/test_turn_usage.py (every
# backend) and tests/test_chat.py; here the command adds up what is stored, so one backend
# (responses: its model has a price) on each database (the sums and days are SQL).
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_usage_adds_up_exactly_as_csv_and_json(
    make_bot: BotFactory, assistant_api: str, database_url: str
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

    assert sum(e["answers"] for e in expected.values()) == 3
    by_user_csv = await usage_of(database_url, "--by", "user", "--format", "csv")
    by_channel_json = await usage_of(database_url, "--by", "channel", "--format", "json")
    table = await usage_of(database_url, "--by", "day")
    empty = await usage_of(database_url, "--until", "2000-01-01")
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
    if assistant_api == "responses":
        assert all(row["cost_usd"] > 0 and row["unpriced_answers"] == 0 for row in by_channel)

    assert "TOTAL" in table and "answers" in table.splitlines()[0]
    assert "No usage recorded" in empty
