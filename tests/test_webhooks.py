"""OpenAI webhooks: with OPENAI_WEBHOOK_SECRET, poll delivery answers as soon as OpenAI says a
background response has ended, instead of at its next poll."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import database_url as async_url
from bot.settings import load_settings
from bot.store.db import create_engine, migrate
from bot.store.webhook_models import WebhookEvent
from bot.turns.wakeups import RunWakeups
from bot.webhooks import WebhookOutcome, WebhookReceiver, ended_response, unused_secret
from tests.fakes.openai_api import FakeOpenAI, new_webhook_secret, sign_webhook
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest, bot_env

SECRET = new_webhook_secret()
RESPONSE_POLL = r"/v1/responses/resp_[A-Za-z0-9]+"
"""`responses.retrieve`: a poll of one response (a stream of it has ?stream=true)."""


def webhook_env(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str, **extra: str
) -> dict[str, str]:
    return bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=database_url,
        assistant_api="responses",
        DELIVERY="poll",
        OPENAI_WEBHOOK_SECRET=SECRET,
        **extra,
    )


def webhook_url(bot: BotUnderTest) -> str:
    return bot.events_url.replace("/slack/events", "/openai/webhook")


def event_body(event_id: str, event_type: str, response_id: str) -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "created_at": int(time.time()),
        "type": event_type,
        "data": {"id": response_id},
    }
    return json.dumps(event).encode()


async def warm_up(bot: BotUnderTest) -> None:
    """One answered question first: the first one pays for the SDK's one-time set-up, which
    in this process (the bot shares the test's event loop) would stall the polls."""
    question = await bot.mention("warm-up", channel="CWARM")
    await bot.wait_for_answers("CWARM", question.ts, timeout=60)


def polls(openai_fake: FakeOpenAI, since: int) -> int:
    return sum(
        1
        for r in openai_fake.requests[since:]
        if r.method == "GET" and re.fullmatch(RESPONSE_POLL, r.path) and not r.query
    )


async def stored_events(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(async_url(database_url))
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- end to end


async def test_a_poll_mode_answer_arrives_on_the_webhook_without_waiting_for_a_poll(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    """Every event is delivered twice (at least once): the answer is still posted once."""
    openai_fake.webhook_repeat_every = 1
    env = webhook_env(slack, openai_fake, database_url)
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        openai_fake.webhook_url, openai_fake.webhook_secret = webhook_url(bot), SECRET
        await warm_up(bot)
        await openai_fake.wait_for(lambda: len(openai_fake.webhook_deliveries) == 2)
        openai_fake.run_s = 1.0
        since, delivered = len(openai_fake.requests), len(openai_fake.webhook_deliveries)
        question = await bot.mention("hello")
        # Well within the 5 s safety-net poll: only the webhook can have woken the turn.
        answers = await bot.wait_for_answers("C0001", question.ts, timeout=4)
        assert [a.text for a in answers] == ["Echo: Alice: hello"]
        # bot_env polls every 20-100 ms: a 1 s model would have taken 10 polls or more.
        assert polls(openai_fake, since) <= 1
        await openai_fake.wait_for(lambda: len(openai_fake.webhook_deliveries) == delivered + 2)
        mine = openai_fake.webhook_deliveries[delivered:]
        assert [d.status for d in mine] == [200, 200]
        assert len({d.webhook_id for d in mine}) == 1
        assert bot.bot is not None
        assert await stored_events(bot.bot.engine) == 2  # the warm-up's event and this one
        assert [a.text for a in bot.answers("C0001", question.ts)] == ["Echo: Alice: hello"]


async def test_without_a_webhook_the_safety_net_poll_still_answers(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object
) -> None:
    """OpenAI never calls (a lost webhook, a wrong URL): the slow poll finds the answer."""
    env = webhook_env(slack, openai_fake, f"sqlite:///{tmp_path}/w.db", OPENAI_WEBHOOK_POLL_S="0.5")
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        await warm_up(bot)
        openai_fake.run_s = 1.0
        since = len(openai_fake.requests)
        question = await bot.mention("anyone there?")
        answers = await bot.wait_for_answers("C0001", question.ts, timeout=10)
        assert [a.text for a in answers] == ["Echo: Alice: anyone there?"]
        # A poll every 0.5 s (the safety net), not every 20-100 ms (bot_env's POLL_*_MS).
        assert 1 <= polls(openai_fake, since) <= 3


async def test_a_forged_or_malformed_webhook_is_refused_and_wakes_nothing(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object
) -> None:
    env = webhook_env(slack, openai_fake, f"sqlite:///{tmp_path}/w.db")
    async with (
        BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot,
        aiohttp.ClientSession() as http,
    ):
        assert bot.bot is not None
        wakeups = bot.bot.wakeups
        url = webhook_url(bot)
        body = event_body("evt_1", "response.completed", "resp_forged")
        now = int(time.time())
        attempts = [
            (sign_webhook(new_webhook_secret(), "evt_1", now, body), body, 401),  # other key
            (sign_webhook(SECRET, "evt_1", now - 3600, body), body, 401),  # replayed, stale
            ({"content-type": "application/json"}, body, 400),  # no signature at all
            (sign_webhook(SECRET, "evt_2", now, b"[1, 2]"), b"[1, 2]", 400),  # not an event
            (sign_webhook(SECRET, "evt_3", now, b"\xff"), b"\xff", 400),  # not UTF-8
        ]
        for headers, data, status in attempts:
            async with http.post(url, data=data, headers=headers) as response:
                assert response.status == status, await response.text()
        assert not wakeups.pending("resp_forged")
        assert await stored_events(bot.bot.engine) == 0
        # The same event, signed with the right secret, is taken: the refusals were the check.
        async with http.post(url, data=body, headers=sign_webhook(SECRET, "evt_1", now, body)) as r:
            assert r.status == 200
        assert wakeups.pending("resp_forged")
        assert await stored_events(bot.bot.engine) == 1


# --------------------------------------------------------------------------- the receiver


async def test_an_event_delivered_twice_wakes_its_turn_once(engine: AsyncEngine) -> None:
    wakeups = RunWakeups()
    receiver = WebhookReceiver(secret=SECRET, engine=engine, wakeups=wakeups)
    other_process = WebhookReceiver(secret=SECRET, engine=engine, wakeups=RunWakeups())
    body = event_body("evt_twice", "response.completed", "resp_1")
    try:
        first = sign_webhook(SECRET, "evt_twice", int(time.time()), body)
        assert await receiver.receive(body, first) is WebhookOutcome.WOKE
        assert await wakeups.wait("resp_1", 0)  # the turn took the wake-up
        again = sign_webhook(SECRET, "evt_twice", int(time.time()) + 1, body)  # a redelivery
        assert await receiver.receive(body, again) is WebhookOutcome.DUPLICATE
        assert await other_process.receive(body, again) is WebhookOutcome.DUPLICATE
        assert not wakeups.pending("resp_1")
        assert await stored_events(engine) == 1
    finally:
        await receiver.close()
        await other_process.close()


@pytest.mark.parametrize(
    ("event_type", "object_id", "woken"),
    [
        ("response.completed", "resp_1", "resp_1"),
        ("response.failed", "resp_1", "resp_1"),
        ("response.cancelled", "resp_1", "resp_1"),
        ("response.incomplete", "resp_1", "resp_1"),
        ("response.completed", None, None),
        ("batch.completed", "batch_1", None),
        ("eval.run.succeeded", "evalrun_1", None),
    ],
)
def test_which_events_wake_a_turn(event_type: str, object_id: str | None, woken: str) -> None:
    assert ended_response(event_type, object_id) == woken


# --------------------------------------------------------------------------- wake-ups


async def test_a_wake_up_that_comes_before_the_wait_is_not_lost() -> None:
    wakeups = RunWakeups()
    wakeups.notify("resp_early")
    assert await wakeups.wait("resp_early", 5)
    assert not await wakeups.wait("resp_early", 0.01)  # claimed once


async def test_a_wait_ends_at_the_notification_or_the_timeout() -> None:
    wakeups = RunWakeups()
    waiting = asyncio.create_task(wakeups.wait("resp_1", 30))
    await asyncio.sleep(0)
    wakeups.notify("resp_1")
    assert await asyncio.wait_for(waiting, 5)
    assert not await wakeups.wait("resp_2", 0.01)


def test_notifications_nobody_claims_are_bounded() -> None:
    wakeups = RunWakeups(max_unclaimed=3)
    for number in range(10):
        wakeups.notify(f"resp_{number}")
    assert [wakeups.pending(f"resp_{n}") for n in range(10)] == [False] * 7 + [True] * 3


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("extra", "active"),
    [
        ({}, True),
        ({"SLACK_APP_TOKEN": "xapp-1"}, False),  # Socket Mode: no HTTP route to call
        ({"ASSISTANT_API": "threads", "OPENAI_ASSISTANT_ID": "asst_1"}, False),
        ({"OPENAI_WEBHOOK_SECRET": ""}, False),
    ],
)
def test_webhooks_are_used_in_http_mode_with_the_responses_api(
    extra: dict[str, str], active: bool
) -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "OPENAI_API_KEY": "sk-1",
        "OPENAI_WEBHOOK_SECRET": SECRET,
        **extra,
    }
    assert load_settings(env, dotenv_path=None).openai_webhooks is active


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({}, None),
        ({"OPENAI_WEBHOOK_SECRET": ""}, None),
        ({"SLACK_APP_TOKEN": "xapp-1"}, "Socket Mode listens on no port for OpenAI to call"),
        (
            {"ASSISTANT_API": "chat"},
            "webhooks announce background responses (ASSISTANT_API=responses), not chat",
        ),
    ],
)
def test_a_secret_that_cannot_serve_is_named_at_start(
    extra: dict[str, str], reason: str | None
) -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "OPENAI_API_KEY": "sk-1",
        "OPENAI_WEBHOOK_SECRET": SECRET,
        **extra,
    }
    assert unused_secret(load_settings(env, dotenv_path=None)) == reason


def test_the_fake_signs_its_events_as_the_sdk_verifies_them() -> None:
    """The fake's webhooks are what OpenAI sends: the SDK's own verifier takes them."""
    import openai

    body = event_body("evt_sdk", "response.completed", "resp_sdk")
    headers = sign_webhook(SECRET, "evt_sdk", int(time.time()), body)
    client = openai.OpenAI(api_key="unused")
    try:
        event = client.webhooks.unwrap(body, headers, secret=SECRET)
        assert (event.type, event.data.id) == ("response.completed", "resp_sdk")
        with pytest.raises(openai.InvalidWebhookSignatureError):
            client.webhooks.unwrap(body + b" ", headers, secret=SECRET)
    finally:
        client.close()


async def test_a_webhook_the_database_cannot_record_is_left_for_openai_to_retry() -> None:
    """503, so OpenAI delivers it again later; and nobody is woken by an unrecorded event."""
    engine = create_engine(async_url("postgresql://nobody@127.0.0.1:1/none"))
    wakeups = RunWakeups()
    receiver = WebhookReceiver(secret=SECRET, engine=engine, wakeups=wakeups)
    body = event_body("evt_down", "response.completed", "resp_down")
    try:
        headers = sign_webhook(SECRET, "evt_down", int(time.time()), body)
        outcome = await receiver.receive(body, headers)
        assert (outcome, outcome.status) == (WebhookOutcome.UNAVAILABLE, 503)
        assert not wakeups.pending("resp_down")
    finally:
        await receiver.close()
        await engine.dispose()
