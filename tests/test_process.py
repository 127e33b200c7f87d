"""The bot as a real process: start-up errors, kill -9, SIGTERM, Socket Mode, two processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.settings import database_url as async_database_url
from bot.store.db import create_engine
from bot.store.models import Turn
from tests.fakes.events import event_envelope, mention
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import RUN_STARTS, BotProcess, Conversations, bot_env

pytestmark = pytest.mark.slow


def run_bot_expecting_failure(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_", "ASSISTANT_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        env={**clean, **env},
        cwd="/tmp",
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "SLACK_BOT_TOKEN is not set"),
        ({"SLACK_BOT_TOKEN": "not-a-token"}, "SLACK_BOT_TOKEN must be a bot token"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET is not set"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, "OPENAI_API_KEY is not set"),
        (
            {
                "SLACK_BOT_TOKEN": "xoxb-1",
                "SLACK_SIGNING_SECRET": "s",
                "OPENAI_API_KEY": "k",
                "ASSISTANT_API": "assistants",
            },
            "ASSISTANT_API must be 'threads', 'responses' or 'chat'",
        ),
        (
            {
                "SLACK_BOT_TOKEN": "xoxb-1",
                "SLACK_SIGNING_SECRET": "s",
                "OPENAI_API_KEY": "k",
                "ASSISTANT_API": "threads",
            },
            "OPENAI_ASSISTANT_ID is not set",
        ),
        (
            {
                "SLACK_BOT_TOKEN": "xoxb-1",
                "SLACK_SIGNING_SECRET": "s",
                "OPENAI_API_KEY": "k",
                "DATABASE_URL": "mysql://x/y",
            },
            "DATABASE_URL scheme 'mysql' is not supported",
        ),
        (
            {
                "SLACK_BOT_TOKEN": "xoxb-1",
                "SLACK_SIGNING_SECRET": "s",
                "OPENAI_API_KEY": "k",
                "PORT": "http",
            },
            "PORT must be a whole number",
        ),
    ],
)
def test_wrong_settings_stop_the_bot_with_one_clear_line(
    env: dict[str, str], expected: str
) -> None:
    result = run_bot_expecting_failure(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


async def test_rejected_token_and_unreachable_database_are_one_line(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/b.db",
        assistant_api="responses",
    )
    bad_token = await asyncio.to_thread(
        run_bot_expecting_failure, {**env, "SLACK_BOT_TOKEN": "xoxb-wrong"}
    )
    assert bad_token.returncode == 1
    assert bad_token.stderr.strip().splitlines() == [
        "bot: Slack rejected SLACK_BOT_TOKEN (invalid_auth): "
        "set it to the Bot User OAuth Token of your installed app"
    ]
    no_db = await asyncio.to_thread(
        run_bot_expecting_failure, {**env, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}
    )
    assert no_db.returncode == 1
    lines = no_db.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "bot: cannot open the database in DATABASE_URL"
    ), no_db.stderr


def test_heroku_style_postgres_url_is_accepted() -> None:
    assert async_database_url("postgres://u:p@h:5432/d") == "postgresql+asyncpg://u:p@h:5432/d"


async def wait_for_stored_run(url: str, timeout: float = 15.0) -> None:
    """Until the bot has recorded the id of the run it started (what a restart resumes)."""
    engine = create_engine(async_database_url(url))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with engine.connect() as connection:
                stored = await connection.scalar(
                    select(func.count()).select_from(Turn).where(Turn.remote_run_id.is_not(None))
                )
            if stored:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the bot never recorded a run id")
    finally:
        await engine.dispose()


async def start_process(env: dict[str, str]) -> BotProcess:
    process = BotProcess(env)
    process.start()
    await process.wait_ready()
    return process


@dataclass
class CrashScene:
    """A bot process that a test talks to, kills with SIGKILL and starts again on the same
    database, as a platform would after a crash."""

    env: dict[str, str]
    process: BotProcess
    talk: Conversations

    def kill(self) -> None:
        self.process.kill()

    async def restart(self) -> None:
        self.process = await start_process(self.env)
        self.talk.events_url = self.process.events_url


@asynccontextmanager
async def crashable_bot(
    env: dict[str, str], slack: FakeSlack, openai: FakeOpenAI
) -> AsyncIterator[CrashScene]:
    process = await start_process(env)
    async with aiohttp.ClientSession() as http:
        scene = CrashScene(env, process, Conversations(process.events_url, slack, openai, http))
        try:
            yield scene
        finally:
            scene.process.stop()


async def test_healthz_answers(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    env = bot_env(
        slack=slack, openai=openai_fake, database_url=database_url, assistant_api="responses"
    )
    process = await start_process(env)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{process.port}/healthz") as response,
        ):
            assert response.status == 200
            assert (await response.json())["ok"] is True
        assert "WARNING" not in process.output(), "a clean start logs no warnings"
    finally:
        process.stop()


async def test_kill_9_during_a_run_answers_once_after_restart(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str, assistant_api: str
) -> None:
    env = bot_env(
        slack=slack, openai=openai_fake, database_url=database_url, assistant_api=assistant_api
    )
    openai_fake.run_s = 2.0
    async with crashable_bot(env, slack, openai_fake) as bot:
        question = await bot.talk.mention("survive a crash")
        await wait_for_stored_run(database_url)
        bot.kill()
        await bot.restart()
        answers = await bot.talk.wait_for_answers("C0001", question.ts, timeout=20)
        await asyncio.sleep(1.0)
        assert [a.text for a in bot.talk.answers("C0001", question.ts)] == [
            "Echo: Alice: survive a crash"
        ]
        assert answers[0].ts == slack.bot_replies("C0001", question.ts)[0].ts
        runs = openai_fake.requests_to("POST", RUN_STARTS)
        if assistant_api == "chat":  # nothing runs remotely: the unanswered turn is asked again
            assert len(runs) == 2 and runs[0].body["messages"] == runs[1].body["messages"]
            return
        assert len(runs) == 1, "the run started before the crash is picked up, not started again"


async def test_kill_9_between_ack_and_run_loses_nothing(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    env = bot_env(
        slack=slack, openai=openai_fake, database_url=database_url, assistant_api="responses"
    )
    async with crashable_bot(env, slack, openai_fake) as bot:
        openai_fake.latency_s = 5.0
        talk = bot.talk
        questions = [await talk.mention(f"question {i}", channel=f"CK{i}") for i in range(3)]
        assert talk.statuses == [200, 200, 200]
        bot.kill()
        openai_fake.latency_s = 0.0
        await bot.restart()
        for i, question in enumerate(questions):
            await talk.wait_for_answers(f"CK{i}", question.ts, timeout=20)
        await asyncio.sleep(0.5)
        for i, question in enumerate(questions):
            assert [a.text for a in talk.answers(f"CK{i}", question.ts)] == [
                f"Echo: Alice: question {i}"
            ]


async def test_sigterm_finishes_short_work_and_exits(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    env = bot_env(
        slack=slack, openai=openai_fake, database_url=database_url, assistant_api="responses"
    )
    openai_fake.run_s = 0.8
    process = await start_process(env)
    async with aiohttp.ClientSession() as http:
        talk = Conversations(process.events_url, slack, openai_fake, http)
        question = await talk.mention("answer before you go")
        await openai_fake.wait_for(lambda: bool(openai_fake.requests_to("POST", r"/v1/responses")))
        code = await asyncio.to_thread(process.terminate)
        assert code == 0, process.output()
        assert [a.text for a in talk.answers("C0001", question.ts)] == [
            "Echo: Alice: answer before you go"
        ]


async def test_sigterm_leaves_long_work_for_the_next_start(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=database_url,
        assistant_api="responses",
        SHUTDOWN_GRACE_S="0.5",
    )
    openai_fake.run_s = 4.0
    process = await start_process(env)
    async with aiohttp.ClientSession() as http:
        talk = Conversations(process.events_url, slack, openai_fake, http)
        question = await talk.mention("long one")
        await openai_fake.wait_for(lambda: bool(openai_fake.requests_to("POST", r"/v1/responses")))
        code = await asyncio.to_thread(process.terminate)
        assert code == 0, process.output()
        assert talk.answers("C0001", question.ts) == []
        restarted = await start_process(env)
        try:
            await talk.wait_for_answers("C0001", question.ts, timeout=20)
            await asyncio.sleep(0.5)
            assert [a.text for a in talk.answers("C0001", question.ts)] == ["Echo: Alice: long one"]
            assert len(openai_fake.requests_to("POST", r"/v1/responses")) == 1
        finally:
            restarted.stop()


async def test_socket_mode_end_to_end(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object, assistant_api: str
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/s.db",
        assistant_api=assistant_api,
        SLACK_APP_TOKEN=slack.app_token,
    )
    del env["SLACK_SIGNING_SECRET"]
    process = BotProcess(env)
    process.start()
    try:
        await slack.wait_for(lambda: slack.socket_connections > 0, timeout=20)
        message = slack.add_message("C0001", user="UALICE", text="<@UBOT> over the socket")
        body = event_envelope(mention(text=message.text, user="UALICE", ts=message.ts))
        ack = await slack.send_socket_event(body)
        assert ack["envelope_id"]
        await slack.send_socket_event(body, retry_attempt=1)
        async with aiohttp.ClientSession() as http:
            talk = Conversations("unused", slack, openai_fake, http)
            await talk.wait_for_answers("C0001", message.ts)
            await asyncio.sleep(0.5)
            assert [a.text for a in talk.answers("C0001", message.ts)] == [
                "Echo: Alice: over the socket"
            ]
    finally:
        process.stop()


async def test_two_processes_on_one_postgres_answer_each_message_once(
    slack: FakeSlack, openai_fake: FakeOpenAI, postgres_url: str, assistant_api: str
) -> None:
    """Both processes get every event. A long lease keeps a heavily loaded test machine from
    turning a late heartbeat into a takeover: this test is about dedup and one run at a time."""
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=postgres_url,
        assistant_api=assistant_api,
        LEASE_S="10",
    )
    openai_fake.run_s = 0.3
    processes = [await start_process(env), await start_process(env)]
    try:
        async with aiohttp.ClientSession() as http:
            talks = [Conversations(p.events_url, slack, openai_fake, http) for p in processes]
            threads: list[tuple[str, str]] = []
            for i in range(8):
                channel = f"CTWO{i}"
                message = slack.add_message(channel, user="UALICE", text=f"<@UBOT> question {i}")
                event = mention(text=message.text, user="UALICE", channel=channel, ts=message.ts)
                await asyncio.gather(*(talk.deliver(event, event_id=f"Ev{i}") for talk in talks))
                threads.append((channel, message.ts))
            for i, (channel, ts) in enumerate(threads):
                follow = slack.add_message(
                    channel, user="UBOB", text=f"follow-up {i}", thread_ts=ts
                )
                event = {
                    **mention(
                        text=follow.text, user="UBOB", channel=channel, ts=follow.ts, thread_ts=ts
                    ),
                    "type": "message",
                    "channel_type": "channel",
                }
                await asyncio.gather(*(talk.deliver(event) for talk in talks))
            try:
                for channel, ts in threads:
                    await talks[0].wait_for_answers(channel, ts, count=2, timeout=30)
            except AssertionError as exc:
                logs = "\n".join(
                    f"--- process {n} ---\n{p.output()}" for n, p in enumerate(processes)
                )
                raise AssertionError(f"{exc}\n{logs}") from None
            await asyncio.sleep(1.0)
            for i, (channel, ts) in enumerate(threads):
                texts = [a.text for a in talks[0].answers(channel, ts)]
                assert len(texts) == 2, texts
                assert texts[0] == f"Echo: Alice: question {i}"
            assert openai_fake.max_concurrent_per_thread == 1
            assert all(status == 200 for talk in talks for status in talk.statuses)
    finally:
        for process in processes:
            process.stop()


async def test_kill_9_mid_stream_replaces_the_half_streamed_answer(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object, assistant_api: str
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/stream.db",
        assistant_api=assistant_api,
        DELIVERY="stream",
    )
    openai_fake.run_s = 3.0
    openai_fake.stream_chunks = 6
    async with crashable_bot(env, slack, openai_fake) as bot:
        question = await bot.talk.mention("stream through a crash")
        await slack.wait_for(lambda: bool(slack.calls_to("chat.appendStream")), timeout=15)
        bot.kill()
        (half,) = slack.bot_replies("C0001", question.ts)
        assert half.streaming and half.text != "Echo: Alice: stream through a crash"
        await bot.restart()
        await bot.talk.wait_for_answers("C0001", question.ts, timeout=20)
        await asyncio.sleep(0.5)
        replies = slack.bot_replies("C0001", question.ts)
        assert [r.text for r in replies] == ["Echo: Alice: stream through a crash"]
        assert replies[0].ts == half.ts, "the half-streamed message is completed, not duplicated"
        runs = openai_fake.requests_to("POST", RUN_STARTS)
        assert len(runs) == (2 if assistant_api == "chat" else 1)  # chat: asked again


@pytest.mark.parametrize("mode", ["poll", "stream"])
async def test_kill_9_before_the_response_id_is_known_answers_once(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object, mode: str
) -> None:
    """OpenAI created the response, the bot died before hearing its id: the restarted bot
    recognises the response by its input in the conversation instead of asking again."""
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/lost-id.db",
        assistant_api="responses",
        DELIVERY=mode,
    )
    openai_fake.run_s = 1.0
    openai_fake.hold_response("POST", r"/v1/responses", seconds=30)
    async with crashable_bot(env, slack, openai_fake) as bot:
        question = await bot.talk.mention("was my question lost?")
        await openai_fake.wait_for(lambda: bool(openai_fake.requests_to("POST", r"/v1/responses")))
        await asyncio.sleep(0.3)
        bot.kill()
        openai_fake.clear_holds()
        await bot.restart()
        await bot.talk.wait_for_answers("C0001", question.ts, timeout=20)
        await asyncio.sleep(0.5)
        texts = [a.text for a in bot.talk.answers("C0001", question.ts)]
        assert texts == ["Echo: Alice: was my question lost?"]
        assert len(openai_fake.requests_to("POST", r"/v1/responses")) == 1


async def test_kill_9_before_the_first_run_mid_thread_still_sends_the_earlier_messages(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object, assistant_api: str
) -> None:
    """The assistant thread was created and stored, the run never started: after a restart
    the assistant still gets the Slack thread's earlier messages with the mention."""
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/first-run.db",
        assistant_api=assistant_api,
    )
    shown: list[str] = []
    openai_fake.reply = lambda texts: shown.extend(texts) or "Here is my answer."
    parent = slack.add_message("C0001", user="UBOB", text="Our deploy failed with error E42")
    openai_fake.fail_http("POST", RUN_STARTS, status=503, times=1000)
    async with crashable_bot(env, slack, openai_fake) as bot:
        await bot.talk.mention("any idea what E42 means?", thread_ts=parent.ts)
        await openai_fake.wait_for(lambda: bool(openai_fake.requests_to("POST", RUN_STARTS)))
        bot.kill()
        openai_fake.clear_failures()
        await bot.restart()
        (answer,) = await bot.talk.wait_for_answers("C0001", parent.ts, timeout=20)
    assert answer.text == "Here is my answer."
    assert any("Bob: Our deploy failed with error E42" in text for text in shown)


async def test_kill_9_while_posting_a_long_answer_posts_each_part_once(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object, assistant_api: str
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/long.db",
        assistant_api=assistant_api,
        DELIVERY="poll",
    )
    paragraphs = [f"Part {i}: " + "word " * 400 for i in range(3)]
    openai_fake.reply = lambda texts: "\n\n".join(paragraphs)
    openai_fake.run_s = 1.0
    async with crashable_bot(env, slack, openai_fake) as bot:
        question = await bot.talk.mention("write a long answer")
        await slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 1)
        slack.hold_next("chat.postMessage", seconds=30)
        await slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 2, timeout=15)
        await asyncio.sleep(0.2)
        bot.kill()
        await bot.restart()
        await bot.talk.wait_for_answers("C0001", question.ts, count=3, timeout=20)
        await asyncio.sleep(1.0)
        texts = [a.text for a in bot.talk.answers("C0001", question.ts)]
        assert len(texts) == 3, [t[:20] for t in texts]
        assert [t[:6] for t in texts] == ["Part 0", "Part 1", "Part 2"]
