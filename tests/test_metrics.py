"""`GET /metrics` (on METRICS_PORT only) counts an answered mention, its latency, tokens
and cost."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from bot.metrics_server import metrics_app
from tests.conftest import BotFactory
from tests.harness import BotUnderTest


@asynccontextmanager
async def metrics_site(bot: BotUnderTest) -> AsyncIterator[str]:
    """The METRICS_PORT site the bot process serves (bot.runtime), beside the test's bot."""
    assert bot.bot is not None
    runner = web.AppRunner(metrics_app(bot.bot.engine))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
    finally:
        await runner.cleanup()


async def scrape(bot: BotUnderTest, url: str) -> str:
    async with bot.http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


def value(text: str, name: str) -> float:
    pattern = re.escape(name) + r" ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_metrics_count_an_answered_mention(make_bot: BotFactory) -> None:
    async with make_bot(OPENAI_MODEL="gpt-5-mini") as bot, metrics_site(bot) as url:
        public = bot.events_url.replace("/slack/events", "/metrics")
        async with bot.http.get(public) as response:
            assert response.status == 404, "PORT serves no token and cost figures"
        before = await scrape(bot, url)
        question = await bot.mention("count me")
        await bot.wait_for_answers("C0001", question.ts)
        after = await scrape(bot, url)

    def grew(name: str) -> float:
        return value(after, name) - value(before, name)

    assert grew('bot_answers_total{outcome="completed"}') == 1
    assert grew("bot_event_to_complete_answer_seconds_count") == 1
    assert grew("bot_event_to_first_words_seconds_count") == 1
    assert grew("bot_event_ack_seconds_count") >= 1
    model = "gpt-5-mini" if bot.assistant_api == "responses" else None
    tokens = [
        line
        for line in after.splitlines()
        if line.startswith("bot_tokens_total{") and 'kind="output"' in line
    ]
    assert tokens, after
    if model:
        assert grew(f'bot_estimated_cost_usd_total{{model="{model}"}}') > 0
    assert "bot_conversations_waiting 0.0" in after
    assert "bot_event_loop_lag_seconds" in after


async def test_json_logs_name_the_turn_and_its_outcome() -> None:
    import asyncio
    import io
    import json
    import logging

    from bot.logs import JsonFormatter, bind_turn, note_outcome

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.json_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    async def a_turn() -> None:
        bind_turn(42, "T0001", "C0002")
        logger.info("turn %s: started", 42)
        note_outcome("completed")
        logger.warning("turn %s: done", 42)

    await asyncio.create_task(a_turn())
    logger.info("outside any turn")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["message"], e.get("turn_id"), e.get("outcome")) for e in lines] == [
        ("turn 42: started", 42, None),
        ("turn 42: done", 42, "completed"),
        ("outside any turn", None, None),
    ]
    assert lines[1]["team"] == "T0001" and lines[1]["channel"] == "C0002"
    assert lines[1]["level"] == "WARNING"
