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
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from bot.__main__ import main
from bot.settings import database_url as async_database_url
from bot.settings import load_settings
from bot.store.db import create_engine
from bot.store.models import Conversation, Turn
from bot.turns.delivery import INTERRUPTED_NOTE
from tests.conftest import ON_SQLITE
from tests.fakes.events import event_envelope, mention
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import (
    ROOT,
    RUN_STARTS,
    BotProcess,
    Conversations,
    bot_env,
    free_port,
    nothing_left,
)
from tests.warm_start import run_module

pytestmark = pytest.mark.slow


def run_bot_expecting_failure(
    env: dict[str, str], *, cold: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python -m bot` run to its end; on a warm start (`tests.warm_start`) unless `cold`."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_", "ASSISTANT_"))
    }
    if not cold:
        return run_module("bot", [], env={**clean, **env}, cwd=Path("/tmp"), timeout=30)
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        env={**clean, **env},
        cwd="/tmp",
        capture_output=True,
        text=True,
        timeout=30,
    )


def refused_settings(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> subprocess.CompletedProcess[str]:
    """`python -m bot`'s entry point (`bot.__main__.main`) run in this process, for settings
    it refuses before anything starts: the exit code and what it printed, as
    `run_bot_expecting_failure` gives them for a real process. A table of settings mistakes
    then costs no interpreter start each; that a real process prints the one line and exits
    with code 2 is `test_a_settings_mistake_stops_the_real_process_with_one_line`."""
    for name in list(os.environ):
        if name.startswith(("SLACK_", "OPENAI_", "ASSISTANT_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir("/tmp")  # as run_bot_expecting_failure: no .env of this checkout
    capsys.readouterr()
    code = main([])
    printed = capsys.readouterr()
    return subprocess.CompletedProcess(["python", "-m", "bot"], code, printed.out, printed.err)


async def refused_start(env: dict[str, str]) -> str:
    """The line `python -m bot` prints before it exits with code 1, for a start it refuses
    once its settings are read (Slack, OpenAI or Azure say no, a port clashes): the start
    `bot.__main__.main` runs (`bot.runtime.serve`), run in this process against the same
    fakes. A table of such starts then costs no interpreter start each; that a real process
    prints the one line and exits with code 1 is
    `test_rejected_token_and_unreachable_database_are_one_line`."""
    from bot.preflight import StartupError
    from bot.runtime import serve

    settings = load_settings({"PORT": str(free_port()), **env}, dotenv_path=None)
    with pytest.raises(StartupError) as refused:
        async with asyncio.timeout(30):  # a start that is not refused fails, not hangs
            await serve(settings)
    line = f"bot: {refused.value}"
    assert "\n" not in line, line
    return line


def test_a_settings_mistake_stops_the_real_process_with_one_line() -> None:
    result = run_bot_expecting_failure({"SLACK_BOT_TOKEN": "xoxb-1"}, cold=True)
    assert result.returncode == 2
    assert one_line(result).startswith(
        "bot: missing settings: SLACK_SIGNING_SECRET, OPENAI_API_KEY"
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {},
            "missing settings: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, OPENAI_API_KEY — copy "
            ".env.example to .env and fill them in",
        ),
        (
            {"SLACK_BOT_TOKEN": "not-a-token", "SLACK_SIGNING_SECRET": "s", "OPENAI_API_KEY": "k"},
            "SLACK_BOT_TOKEN must be a bot token",
        ),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "missing settings: SLACK_SIGNING_SECRET, OPENAI_API_KEY"),
        (
            {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"},
            "missing settings: OPENAI_API_KEY",
        ),
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
            "missing settings: OPENAI_ASSISTANT_ID",
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
    env: dict[str, str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = refused_settings(env, monkeypatch, capsys)
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
    bad_token, no_db = await asyncio.gather(  # two separate starts, side by side
        asyncio.to_thread(run_bot_expecting_failure, {**env, "SLACK_BOT_TOKEN": "xoxb-wrong"}),
        asyncio.to_thread(
            run_bot_expecting_failure,
            {**env, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"},
        ),
    )
    assert bad_token.returncode == 1
    assert bad_token.stderr.strip().splitlines() == [
        "bot: Slack rejected SLACK_BOT_TOKEN (invalid_auth): "
        "set it to the Bot User OAuth Token of your installed app"
    ]
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


async def start_process(
    env: dict[str, str], *, port: int | None = None, cold: bool = False
) -> BotProcess:
    process = BotProcess(env, port=port, cold=cold)
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

    async def restart(self, *, as_another_instance: bool = False) -> None:
        """Start the bot again on the same PORT, so under the same instance name: it resumes
        the dead process's conversations at once. `as_another_instance`: on another port, as
        a second process would; it takes them over only once their leases expire (LEASE_S)."""
        port = None if as_another_instance else self.process.port
        self.process = await start_process(self.env, port=port)
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
    process = await start_process(env, cold=True)  # `python -m bot` itself, interpreter and all
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{process.port}/healthz") as response,
        ):
            assert response.status == 200
            assert (await response.json())["ok"] is True
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{process.port}/metrics") as response,
        ):
            assert response.status == 404, "without METRICS_PORT, no port serves /metrics"
        assert "WARNING" not in process.output(), "a clean start logs no warnings"
    finally:
        process.stop()


# The restarted process takes the turn over through the store (both databases), as another
# instance once the dead one's lease has expired (the other kill -9 tests restart under the
# same name, which resumes at once: tests/test_takeover.py); what it does with the run it
# finds is the backend's (every backend, on SQLite).
@pytest.mark.parametrize(
    ("database_url", "assistant_api"),
    [("sqlite", "threads"), ("sqlite", "responses"), ("sqlite", "chat"), ("postgres", "threads")],
    indirect=True,
)
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
        await bot.restart(as_another_instance=True)
        answers = await bot.talk.wait_for_answers("C0001", question.ts, timeout=60)
        await nothing_left(database_url)
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
        # At once, so intake stores them together (one commit): each ack still means stored.
        questions = await asyncio.gather(
            *(talk.mention(f"question {i}", channel=f"CK{i}") for i in range(6))
        )
        assert talk.statuses == [200] * 6
        bot.kill()
        openai_fake.latency_s = 0.0
        await bot.restart()
        for i, question in enumerate(questions):
            await talk.wait_for_answers(f"CK{i}", question.ts, timeout=60)
        await nothing_left(database_url)
        for i, question in enumerate(questions):
            assert [a.text for a in talk.answers(f"CK{i}", question.ts)] == [
                f"Echo: Alice: question {i}"
            ]


@ON_SQLITE  # the work is finished in the process; no lease changes hands
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
    openai_fake.run_s = 3.0  # SIGTERM at once, gone 0.5 s later: well before it ends
    process = await start_process(env)
    async with aiohttp.ClientSession() as http:
        talk = Conversations(process.events_url, slack, openai_fake, http)
        question = await talk.mention("long one")
        await openai_fake.wait_for(lambda: bool(openai_fake.requests_to("POST", r"/v1/responses")))
        code = await asyncio.to_thread(process.terminate)
        assert code == 0, process.output()
        # Cut short by the grace period: at most the first words, marked as interrupted.
        shown = slack.bot_replies("C0001", question.ts)
        assert all(m.text.endswith(INTERRUPTED_NOTE) and not m.streaming for m in shown)
        restarted = await start_process(env)
        try:
            await talk.wait_for_answers("C0001", question.ts, timeout=60)
            await nothing_left(database_url)
            assert [a.text for a in talk.answers("C0001", question.ts)] == ["Echo: Alice: long one"]
            assert len(openai_fake.requests_to("POST", r"/v1/responses")) == 1
        finally:
            restarted.stop()


@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)  # Slack's side only
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
        await slack.wait_for(lambda: slack.socket_connections > 0, timeout=60)
        message = slack.add_message("C0001", user="UALICE", text="<@UBOT> over the socket")
        body = event_envelope(mention(text=message.text, user="UALICE", ts=message.ts))
        ack = await slack.send_socket_event(body)
        assert ack["envelope_id"]
        await slack.send_socket_event(body, retry_attempt=1)
        async with aiohttp.ClientSession() as http:
            talk = Conversations("unused", slack, openai_fake, http)
            await talk.wait_for_answers("C0001", message.ts)
            await nothing_left(env["DATABASE_URL"])
            assert [a.text for a in talk.answers("C0001", message.ts)] == [
                "Echo: Alice: over the socket"
            ]
    finally:
        process.stop()


# Dedup and one run a thread at a time are the store's leases, whatever the backend; on
# threads a second run on a thread would be refused by OpenAI itself.
@pytest.mark.parametrize("assistant_api", ["threads"], indirect=True)
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
            await nothing_left(postgres_url)
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
    openai_fake.run_s = 2.0  # killed at its first words, a third of a second in
    openai_fake.stream_chunks = 6
    async with crashable_bot(env, slack, openai_fake) as bot:
        question = await bot.talk.mention("stream through a crash")
        await slack.wait_for(lambda: bool(slack.calls_to("chat.appendStream")), timeout=60)
        bot.kill()
        (half,) = slack.bot_replies("C0001", question.ts)
        assert half.streaming and half.text != "Echo: Alice: stream through a crash"
        await bot.restart()
        await bot.talk.wait_for_answers("C0001", question.ts, timeout=60)
        await nothing_left(env["DATABASE_URL"])
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
        # The response exists at OpenAI; its id is held back from the bot.
        await openai_fake.wait_for(lambda: bool(openai_fake.responses))
        bot.kill()
        openai_fake.clear_holds()
        await bot.restart()
        await bot.talk.wait_for_answers("C0001", question.ts, timeout=60)
        await nothing_left(env["DATABASE_URL"])
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
        (answer,) = await bot.talk.wait_for_answers("C0001", parent.ts, timeout=60)
    assert answer.text == "Here is my answer."
    assert any("Bob: Our deploy failed with error E42" in text for text in shown)


@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)  # posting only
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
        await slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 2, timeout=60)
        # The second part is in the thread; the bot has not heard back (held).
        await slack.wait_for(lambda: len(slack.bot_replies("C0001", question.ts)) == 2)
        bot.kill()
        await bot.restart()
        await bot.talk.wait_for_answers("C0001", question.ts, count=3, timeout=60)
        await nothing_left(env["DATABASE_URL"])
        texts = [a.text for a in bot.talk.answers("C0001", question.ts)]
        assert len(texts) == 3, [t[:20] for t in texts]
        assert [t[:6] for t in texts] == ["Part 0", "Part 1", "Part 2"]


# --------------------------------------------------------------------------- start-up, CLI


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any of the bot's settings (as on a fresh machine)."""
    names = ("SLACK_", "OPENAI_", "ASSISTANT_", "DATABASE_URL", "PORT", "HEALTH_PORT")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(names)}, **extra}


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The process failed with exactly one line on stderr, and no traceback."""
    assert result.returncode not in (0, None), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_help_needs_no_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--help"],
        env=clean_env(),
        cwd="/tmp",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: python -m bot" in result.stdout and "purge" in result.stdout


def test_a_commands_help_needs_no_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m bot purge --help`: the entry point in this process (that a real process
    answers --help without settings is the test above)."""
    for name in list(os.environ):
        if name.startswith(("SLACK_", "OPENAI_", "ASSISTANT_", "DATABASE_URL")):
            monkeypatch.delenv(name)
    monkeypatch.chdir("/tmp")
    with pytest.raises(SystemExit) as exited:
        main(["purge", "--help"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    assert "usage: python -m bot purge" in printed and "--older-than-days" in printed


def test_bench_help_needs_no_bench_extras() -> None:
    """`python -m bench.run --help` with psutil and matplotlib not importable."""
    code = (
        "import runpy, sys\n"
        "sys.modules['psutil'] = None\n"
        "sys.modules['matplotlib'] = None\n"
        "sys.argv = ['python -m bench.run', '--help']\n"
        "runpy.run_module('bench.run', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout


async def test_rejected_app_token_stops_socket_mode_with_one_line(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/s.db",
        assistant_api="responses",
        SLACK_APP_TOKEN="xapp-revoked",
    )
    del env["SLACK_SIGNING_SECRET"]
    line = await refused_start(env)
    assert line.startswith("bot: Slack rejected SLACK_APP_TOKEN (invalid_auth)"), line


@asynccontextmanager
async def tiny_server(status: int, body: str, content_type: str) -> AsyncIterator[str]:
    """An HTTP server answering every request with the same response; yields its base URL."""

    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("<html><body><h1>404 Not Found</h1></body></html>", "text/html"), ("", "text/plain")],
)
async def test_slack_api_url_that_is_not_slack_is_one_true_line(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object, body: str, content_type: str
) -> None:
    async with tiny_server(404, body, content_type) as url:
        env = bot_env(
            slack=slack,
            openai=openai_fake,
            database_url=f"sqlite:///{tmp_path}/b.db",
            assistant_api="responses",
            SLACK_API_URL=f"{url}/api/",
        )
        line = await refused_start(env)
    assert line == (f"bot: SLACK_API_URL {url}/api/ does not look like Slack's Web API (HTTP 404)")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("closed port", "bot: cannot reach OpenAI at OPENAI_BASE_URL {url} (connection refused)"),
        ("wrong key", "bot: OpenAI at {url} rejected OPENAI_API_KEY (HTTP 401)"),
        ("unknown model", "bot: OPENAI_MODEL gpt-nope is not a model this OPENAI_API_KEY"),
        ("unknown assistant", "bot: OPENAI_ASSISTANT_ID asst_nope is not an assistant"),
    ],
)
async def test_wrong_openai_settings_stop_the_bot_at_start(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object, case: str, expected: str
) -> None:
    api = "threads" if case == "unknown assistant" else "responses"
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/o.db",
        assistant_api=api,
    )
    if case == "closed port":
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{free_port()}/v1"
    elif case == "wrong key":
        env["OPENAI_API_KEY"] = "sk-wrong"
    elif case == "unknown model":
        env["OPENAI_MODEL"] = "gpt-nope"
    else:
        env["OPENAI_ASSISTANT_ID"] = "asst_nope"
    line = await refused_start(env)
    assert line.startswith(expected.format(url=env["OPENAI_BASE_URL"])), line


async def test_compatible_server_without_model_lookup_warns_and_starts(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object
) -> None:
    """A server that speaks the API but has no `GET /models/{id}` (vLLM answers
    `{"detail": "Not Found"}`): one warning, and the bot starts."""
    async with tiny_server(404, '{"detail": "Not Found"}', "application/json") as url:
        env = bot_env(
            slack=slack,
            openai=openai_fake,
            database_url=f"sqlite:///{tmp_path}/c.db",
            assistant_api="responses",
            OPENAI_BASE_URL=f"{url}/v1",
        )
        process = await start_process(env)
        process.stop()
    warnings = [line for line in process.output().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, process.output()
    assert "cannot look up OPENAI_MODEL (HTTP 404, no such endpoint)" in warnings[0]


async def test_refused_openai_connection_fails_the_answer_fast(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/r.db",
        assistant_api="responses",
    )
    process = await start_process(env)
    try:
        await openai_fake.stop()  # OpenAI goes away after the start: connections are refused
        async with aiohttp.ClientSession() as http:
            talk = Conversations(process.events_url, slack, openai_fake, http)
            started = time.monotonic()
            question = await talk.mention("are you there?")
            (answer,) = await talk.wait_for_answers("C0001", question.ts, timeout=30)
            took = time.monotonic() - started
        assert "couldn't reach the assistant service" in answer.text
        assert took < 10, f"a refused connection took {took:.1f}s to explain"
        assert "connection refused" in process.output()
    finally:
        process.stop()


# --------------------------------------------------------------------------- signals


async def test_sigterm_during_a_slow_start_exits_promptly(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/slow.db",
        assistant_api="responses",
    )
    slack.hold_next("auth.test", seconds=60)
    process = BotProcess(env)
    process.start()
    try:
        await slack.wait_for(lambda: bool(slack.calls_to("auth.test")), timeout=60)
        started = time.monotonic()
        code = await asyncio.to_thread(process.terminate, 10.0)
        assert code == 0, process.output()
        assert time.monotonic() - started < 5
        assert "Traceback" not in process.output()
        # Nothing had started: the last line says so, not "what was in hand" (issue 20).
        assert "stopped during start-up; nothing had been taken in hand" in process.output()
        assert "what was in hand" not in process.output()
    finally:
        process.stop()


async def test_socket_mode_serves_healthz_and_stops_on_sigterm_while_reconnecting(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/sock.db",
        assistant_api="responses",
        SLACK_APP_TOKEN=slack.app_token,
    )
    del env["SLACK_SIGNING_SECRET"]
    process = await start_process(env)  # ready = GET /healthz on PORT answers 200
    try:
        await slack.wait_for(lambda: slack.socket_connections > 0, timeout=60)
        opened = len(slack.calls_to("apps.connections.open"))
        slack.fail_next("apps.connections.open", status=503, times=1000)
        await slack.disconnect_sockets()
        # The SDK now retries every 10 s: Slack keeps refusing a new connection.
        await slack.wait_for(
            lambda: len(slack.calls_to("apps.connections.open")) > opened, timeout=20
        )
        started = time.monotonic()
        code = await asyncio.to_thread(process.terminate, 10.0)
        assert code == 0, process.output()
        assert time.monotonic() - started < 6
    finally:
        process.stop()


# --------------------------------------------------------------------------- database outage


class CuttableProxy:
    """A TCP proxy in front of PostgreSQL that a test can cut (open connections dropped, new
    ones refused, as when the database host goes away) and restore on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._writers.difference_update((writer, upstream_writer))


async def wait_until_released(url: str, timeout: float = 15.0) -> None:
    """Until no conversation is leased (the bot holds nothing when the database goes)."""
    engine = create_engine(async_database_url(url))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with engine.connect() as connection:
                leased = await connection.scalar(
                    select(func.count())
                    .select_from(Conversation)
                    .where(Conversation.lease_owner.is_not(None))
                )
            if not leased:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the bot still holds a conversation")
    finally:
        await engine.dispose()


async def test_database_outage_is_two_log_lines_and_nothing_is_lost(
    slack: FakeSlack, openai_fake: FakeOpenAI, postgres_url: str
) -> None:
    """The database goes away for a few seconds while events arrive: the events are refused
    (Slack redelivers them), the log says so once and says once when it is back, and the
    redelivered messages are answered."""
    host_port, _, database = postgres_url.rpartition("@")[2].partition("/")
    host, _, port = host_port.partition(":")
    proxy = CuttableProxy(host, int(port or 5432))
    await proxy.start()
    user = postgres_url.split("//", 1)[1].rpartition("@")[0]
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"postgresql://{user}@127.0.0.1:{proxy.port}/{database}",
        assistant_api="responses",
    )
    process = await start_process(env)
    try:
        async with aiohttp.ClientSession() as http:
            talk = Conversations(process.events_url, slack, openai_fake, http)
            before = await talk.mention("before the outage")
            await talk.wait_for_answers("C0001", before.ts)
            await wait_until_released(postgres_url)
            await proxy.cut()
            refused: list[tuple[dict[str, Any], str]] = []
            for i in range(8):  # events keep arriving for about 3 s of outage
                channel = f"COUT{i}"
                message = slack.add_message(channel, user="UALICE", text=f"<@UBOT> outage {i}")
                event = mention(text=message.text, user="UALICE", channel=channel, ts=message.ts)
                status = await talk.deliver(event, event_id=f"EvOut{i}")
                assert status >= 500, "an event the bot could not store must not be acked"
                refused.append((event, message.ts))
                await asyncio.sleep(0.4)
            await proxy.start()
            for i, (event, _) in enumerate(refused):  # Slack redelivers
                assert await talk.deliver(event, event_id=f"EvOut{i}", retry_num=1) == 200
            for i, (_, ts) in enumerate(refused):
                await talk.wait_for_answers(f"COUT{i}", ts, timeout=30)
    finally:
        process.stop()
        await proxy.cut()
    log = process.output()
    assert "Traceback" not in log, log
    warnings = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
    assert len(warnings) <= 2, "\n".join(warnings)
    assert any("database unreachable" in line for line in warnings), log
    back = [line for line in log.splitlines() if "database reachable again" in line]
    assert len(back) == 1 and " INFO " in back[0], log
