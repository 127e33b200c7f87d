"""Leases under stress: fencing after a takeover, instant restarts, retried starts that must
not be mistaken for an earlier turn, attempt caps, and limits shared across processes."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.settings import database_url as async_database_url
from bot.store.db import create_engine, migrate
from bot.store.inbox import NewMessage
from bot.store.leases import LeaseLost
from bot.store.models import Conversation, Turn
from bot.store.repository import Store
from bot.turns.states import Outcome
from tests.conftest import BotFactory
from tests.fakes.events import dm_message
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import (
    RUN_STARTS,
    BotProcess,
    BotUnderTest,
    Conversations,
    bot_env,
    nothing_left,
)
from tests.test_process import crashable_bot, start_process, wait_for_stored_run


async def _store(url: str) -> Store:
    engine = create_engine(async_database_url(url))
    await migrate(engine)
    return Store(engine)


async def test_a_write_under_an_old_lease_fails_after_a_takeover(database_url: str) -> None:
    """The fencing token: process A's lease lapsed and B claimed the conversation; A's late
    writes (a turn moved back, a remote thread replaced) change nothing."""
    store = await _store(database_url)
    try:
        await store.inbox.record_message(
            NewMessage("T1", "C1", "1.0", "1.0", "U1", "hello", surface="channel")
        )
        (lease_a,) = await store.leases.claim_waiting(owner="a", lease_s=30, limit=10)
        conversation_id = lease_a.conversation_id
        work = await store.turns.next_turn(lease_a, deadline_s=60)
        assert work is not None
        await store.turns.mark_running(work.turn.id, lease_a, run_id="run_a", backend="threads")
        async with store.engine.begin() as connection:  # A is paused past its lease
            await connection.execute(
                Conversation.__table__.update().values(lease_until=time.time() - 1)
            )
        lease_b = await store.leases.claim(conversation_id, owner="b", lease_s=30)
        assert lease_b is not None and lease_b.generation > lease_a.generation
        await store.turns.mark_done(work.turn.id, lease_b, chunks_posted=0, reply_ts=None)

        with pytest.raises(LeaseLost):
            await store.turns.mark_posting(work.turn.id, lease_a, outcome=Outcome.COMPLETED)
        with pytest.raises(LeaseLost):
            await store.turns.set_remote_thread(lease_a, backend="responses", remote_id="conv_a")
        with pytest.raises(LeaseLost):
            await store.turns.next_turn(lease_a, deadline_s=60)
        lease_a.valid_until = 0.0  # lapsed: renewing proves it is gone
        with pytest.raises(LeaseLost):
            await store.leases.ensure_held(lease_a)
        async with store.engine.connect() as connection:
            status = await connection.scalar(select(Turn.status).where(Turn.id == work.turn.id))
            remote = await connection.scalar(select(Conversation.remote_id))
        assert (status, remote) == ("done", None)
    finally:
        await store.engine.dispose()


async def test_a_restarted_process_resumes_its_own_work_at_once(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    """kill -9 and a restart under the same instance name: the dead process's lease is not
    waited out (LEASE_S is a minute here), the run it started is picked up, answered once."""
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=database_url,
        assistant_api="responses",
        LEASE_S="60",
        BOT_INSTANCE_ID="web.1",
    )
    openai_fake.run_s = 1.5
    async with crashable_bot(env, slack, openai_fake) as bot:
        question = await bot.talk.mention("resume me now")
        await wait_for_stored_run(database_url)
        bot.kill()
        await bot.restart()
        await bot.talk.wait_for_answers("C0001", question.ts, timeout=60)
        await nothing_left(database_url)  # an adopted stream is stopped, then replaced
        assert [a.text for a in bot.talk.answers("C0001", question.ts)] == [
            "Echo: Alice: resume me now"
        ]
        assert len(openai_fake.requests_to("POST", RUN_STARTS)) == 1


async def _max_attempts(url: str) -> int:
    engine = create_engine(async_database_url(url))
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(select(func.max(Turn.attempts))) or 0)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("mode", ["poll", "stream"])
async def test_a_process_frozen_past_its_lease_posts_nothing_when_it_wakes(
    slack: FakeSlack, openai_fake: FakeOpenAI, postgres_url: str, mode: str
) -> None:
    """SIGSTOP a process while its answer is being made, let a second process take over and
    answer, then SIGCONT the first: one answer, posted once, nothing left streaming."""
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=postgres_url,
        assistant_api="responses",
        DELIVERY=mode,
        LEASE_S="2",
    )
    openai_fake.run_s = 2.5
    frozen = await start_process({**env, "BOT_INSTANCE_ID": "frozen"})
    other: BotProcess | None = None
    try:
        async with aiohttp.ClientSession() as http:
            talk = Conversations(frozen.events_url, slack, openai_fake, http)
            question = await talk.mention("who answers me?")
            await wait_for_stored_run(postgres_url)
            assert frozen.process is not None
            frozen.process.send_signal(signal.SIGSTOP)
            other = await start_process({**env, "BOT_INSTANCE_ID": "other"})
            for _ in range(600):
                if await _max_attempts(postgres_url) >= 2:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("no takeover: " + other.output()[-3000:])
            await talk.wait_for_answers("C0001", question.ts, timeout=30)
            frozen.process.send_signal(signal.SIGCONT)
            for _ in range(200):  # until the woken process has noticed
                if "lease lost" in frozen.output():
                    break
                await asyncio.sleep(0.05)
            await nothing_left(postgres_url)
            replies = slack.bot_replies("C0001", question.ts)
            assert [(m.text, m.streaming) for m in replies] == [
                ("Echo: Alice: who answers me?", False)
            ]
            posts = slack.calls_to("chat.postMessage") + slack.calls_to("chat.startStream")
            # one message; another only if the frozen process woke inside its Slack call, and
            # then it deleted what nobody could ever finish
            assert len(posts) - len(slack.calls_to("chat.delete")) == 1, posts
    finally:
        if frozen.process is not None and frozen.process.poll() is None:
            frozen.process.send_signal(signal.SIGCONT)
        frozen.stop()
        if other is not None:
            other.stop()


@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_question_asked_twice_is_asked_again_when_its_start_fails_once(
    make_bot: BotFactory,
) -> None:
    """ "continue", answered; "continue" again, whose first start gets a 503: the retry must
    not take the first "continue" in the conversation for its own and re-post that answer."""
    async with make_bot(RETRY_BASE_S="0") as bot:
        question = await bot.mention("continue")
        await bot.wait_for_answers("C0001", question.ts)
        bot.openai.fail_http("POST", r"/v1/responses$", status=503, times=1)
        await bot.reply("continue", thread_ts=question.ts)
        await bot.wait_for_answers("C0001", question.ts, count=2)
        (conversation_id,) = bot.openai.conversations
        asked = [
            text for role, text in bot.openai.conversation_items(conversation_id) if role == "user"
        ]
        assert len(asked) == 2, asked
        assert len([r for r in bot.openai.responses.values() if r.reply]) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_turn_that_keeps_failing_is_explained_and_the_thread_moves_on(
    make_bot: BotFactory,
) -> None:
    """Reading the thread fails on every attempt: after the cap the user is told, and the
    next message in the thread is answered."""
    async with make_bot(RETRY_BASE_S="0") as bot:
        parent = bot.slack.add_message("C0001", user="UBOB", text="some context")
        # ok: false (Slack's own "internal_error"), which the client does not retry itself
        bot.slack.fail_next("conversations.replies", status=200, times=10_000)
        question = await bot.mention("what was said?", thread_ts=parent.ts)
        (note,) = await bot.wait_for_answers("C0001", parent.ts, timeout=30)
        assert "couldn't reach the assistant service" in note.text
        bot.slack.clear_failures("conversations.replies")
        follow_up = await bot.reply("and now?", thread_ts=parent.ts)
        answers = await bot.wait_for_answers("C0001", parent.ts, count=2, timeout=30)
        assert answers[-1].text.startswith("Echo:") and "and now?" in answers[-1].text
        assert follow_up.ts < answers[-1].ts and question.ts < note.ts


async def test_the_rate_limit_holds_across_processes(
    slack: FakeSlack, openai_fake: FakeOpenAI, postgres_url: str
) -> None:
    """Two processes on one database, 2 messages a minute: a user who writes to both, with
    Slack's event pairs and redeliveries, gets exactly two answers and one polite refusal."""
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=postgres_url,
        assistant_api="responses",
        USER_RATE_LIMIT_PER_MINUTE="2",
    )
    async with (
        BotUnderTest.running(
            {**env, "BOT_INSTANCE_ID": "one"}, slack=slack, openai=openai_fake
        ) as one,
        BotUnderTest.running(
            {**env, "BOT_INSTANCE_ID": "two"}, slack=slack, openai=openai_fake
        ) as two,
    ):
        first = await one.dm("one")
        # The same message reaches the other process too (a redelivery).
        await two.deliver(dm_message(text="one", user="UALICE", ts=first.ts))
        second = await two.dm("two")
        third = await one.dm("three")
        await one.wait_for_answers("D0001", first.ts)
        await two.wait_for_answers("D0001", second.ts)
        await slack.wait_for(lambda: bool(slack.ephemerals))
        await one.idle()
        await two.idle()
        assert slack.bot_replies("D0001", third.ts) == []
        assert len(slack.ephemerals) == 1


async def test_a_stream_started_just_before_a_crash_becomes_the_answer(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object
) -> None:
    """The stream started with the first words, and the process died before it stored the
    message's ts: the restarted bot finishes that message instead of leaving it streaming
    beside a second answer."""
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/orphan.db",
        assistant_api="responses",
        DELIVERY="stream",
        BOT_INSTANCE_ID="web.1",
    )
    openai_fake.run_s = 1.0
    slack.hold_next("chat.startStream", seconds=30)
    async with crashable_bot(env, slack, openai_fake) as bot:
        question = await bot.talk.mention("finish what you started")
        # The stream is in the thread with its first words; the bot has not heard back.
        await slack.wait_for(lambda: len(slack.bot_replies("C0001", question.ts)) == 1)
        bot.kill()
        await bot.restart()
        await bot.talk.wait_for_answers("C0001", question.ts, timeout=60)
        await nothing_left(env["DATABASE_URL"])
        replies = slack.bot_replies("C0001", question.ts)
        assert [(m.text, m.streaming) for m in replies] == [
            ("Echo: Alice: finish what you started", False)
        ]
