"""One log line per finished turn (issue 20): at INFO, as JSON fields with LOG_FORMAT=json
(team and channel fields, not words in the message), and never the message text."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest

from bot.turns.ending import turn_fields
from bot.turns.session import TurnTimings
from bot.turns.states import Outcome
from bot.turns.usage import TurnTotal
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import BotProcess, BotUnderTest, Conversations, bot_env

FIELDS = {
    "turn_id",
    "team",
    "channel",
    "backend",
    "model",
    "outcome",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "first_words_s",
    "complete_s",
}


def finished_lines(output: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line["message"] == "turn finished"]


def log_env(
    slack: FakeSlack, openai: FakeOpenAI, assistant_api: str, tmp_path: Path
) -> dict[str, str]:
    return bot_env(
        slack=slack,
        openai=openai,
        database_url=f"sqlite:///{tmp_path}/log.db",
        assistant_api=assistant_api,
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        OPENAI_MODEL="gpt-5-mini",
    )


async def answer_two(talk: Conversations, openai: FakeOpenAI) -> None:
    """One question answered, one cut short (`incomplete`)."""
    answered = await talk.mention("a secret plan for the launch")
    await talk.wait_for_answers("C0001", answered.ts)
    openai.script_runs("incomplete")
    cut = await talk.mention("this one is cut short")
    await talk.wait_for_answers("C0001", cut.ts)


def check_lines(lines: list[dict[str, object]], *, team: str, assistant_api: str) -> None:
    first, second = lines
    assert set(first) >= FIELDS
    assert (first["team"], first["channel"]) == (team, "C0001")
    assert first["backend"] == assistant_api and first["outcome"] == "completed"
    assert isinstance(first["input_tokens"], int) and first["input_tokens"] > 0
    assert isinstance(first["output_tokens"], int) and first["output_tokens"] > 0
    assert first["model"]
    if assistant_api != "threads":  # the assistant's model (gpt-4o) has a price too
        assert isinstance(first["cost_usd"], float) and first["cost_usd"] > 0
    assert 0 <= first["first_words_s"] <= first["complete_s"]  # type: ignore[operator]
    assert second["outcome"] == "incomplete"


# The line as a real process writes it (JSON on its output); what each backend puts in its
# fields is the next test's, in this process.
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_every_finished_turn_writes_one_json_line_at_info(
    slack: FakeSlack, openai_fake: FakeOpenAI, assistant_api: str, tmp_path: Path
) -> None:
    process = BotProcess(log_env(slack, openai_fake, assistant_api, tmp_path), cwd=tmp_path)
    process.start()
    try:
        await process.wait_ready()
        async with aiohttp.ClientSession() as http:
            await answer_two(
                Conversations(process.events_url, slack, openai_fake, http), openai_fake
            )
            await slack.wait_for(lambda: len(finished_lines(process.output())) == 2)
    finally:
        process.stop()
    output = process.output()
    check_lines(finished_lines(output), team=slack.team_id, assistant_api=assistant_api)
    assert "secret plan" not in output


@pytest.mark.parametrize("assistant_api", ["chat", "threads"], indirect=True)
async def test_every_backend_fills_the_turn_line(
    slack: FakeSlack,
    openai_fake: FakeOpenAI,
    assistant_api: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = log_env(slack, openai_fake, assistant_api, tmp_path)
    caplog.set_level(logging.INFO)
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        await answer_two(bot, openai_fake)
    lines = [r.__dict__["fields"] for r in caplog.records if r.getMessage() == "turn finished"]
    check_lines(lines, team=slack.team_id, assistant_api=assistant_api)
    assert "secret plan" not in caplog.text


def test_the_turn_line_fields() -> None:
    usage = TurnTotal("gpt-5-mini", 1_117, 231, 0.0012345678)
    timings = TurnTimings(received_at=100.0)
    timings.words_out(100.81234)
    timings.answered(102.5)
    fields = turn_fields(
        turn_id=7,
        team="T1",
        channel="C1",
        backend="responses",
        outcome=Outcome.COMPLETED,
        usage=usage,
        timings=timings,
    )
    assert fields == {
        "turn_id": 7,
        "team": "T1",
        "channel": "C1",
        "backend": "responses",
        "model": "gpt-5-mini",
        "outcome": "completed",
        "input_tokens": 1_117,
        "output_tokens": 231,
        "cost_usd": 0.001235,
        "first_words_s": 0.812,
        "complete_s": 2.5,
    }
    # No message stored (nothing to measure from): no latencies, the rest as usual.
    unknown = turn_fields(
        turn_id=7,
        team="T1",
        channel="C1",
        backend="chat",
        outcome=Outcome.OVER_BUDGET,
        usage=TurnTotal(),
        timings=TurnTimings.since([]),
    )
    assert (unknown["complete_s"], unknown["first_words_s"]) == (None, None)
    assert (unknown["input_tokens"], unknown["cost_usd"], unknown["model"]) == (0, None, None)


def test_text_logs_put_the_fields_after_the_message() -> None:
    import logging

    from bot.logs import TextFormatter

    record = logging.LogRecord("bot", logging.INFO, "x", 1, "turn finished", None, None)
    record.fields = {"turn_id": 7, "team": "T1", "cost_usd": None}
    line = TextFormatter().format(record)
    assert line.endswith("bot: turn finished turn_id=7 team=T1 cost_usd=-")


def test_json_logs_put_a_lines_fields_beside_its_message() -> None:
    import logging

    from bot.installations.workspaces import log as installations_log
    from bot.logs import JsonFormatter

    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Keep()
    installations_log.addHandler(handler)
    try:
        installations_log.warning(
            "an event from a workspace where the bot is not installed",
            extra={"fields": {"team": "T0BAD"}},
        )
    finally:
        installations_log.removeHandler(handler)
    (line,) = [json.loads(JsonFormatter().format(record)) for record in captured]
    assert line["team"] == "T0BAD" and "T0BAD" not in line["message"]
