"""What reaches `POST /slack/events`: forged, stale, malformed and unexpected requests, and
the policies applied before a message is taken (allow-lists, per-user rate limit)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from bot.app import Rejection, check_request
from bot.listeners.messages import team_of, user_team_of
from bot.store.models import Conversation
from tests.conftest import ON_ONE_BACKEND, ON_SQLITE, BotFactory
from tests.fakes.events import channel_message, event_envelope, mention, post_event
from tests.harness import SIGNING_SECRET, BotUnderTest


async def _post_raw(bot: BotUnderTest, body: bytes, **kwargs: object) -> int:
    status, _, _ = await post_event(
        bot.http,
        bot.events_url,
        body,
        signing_secret=SIGNING_SECRET,
        **kwargs,  # type: ignore[arg-type]
    )
    return status


def _question(bot: BotUnderTest, text: str = "<@UBOT> hi") -> bytes:
    message = bot.slack.add_message("C0001", user="UALICE", text=text)
    return json.dumps(event_envelope(mention(text=text, user="UALICE", ts=message.ts))).encode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
class TestRequests:
    async def test_forged_signature_is_rejected_and_nothing_is_processed(
        self, bot: BotUnderTest
    ) -> None:
        status = await _post_raw(bot, _question(bot), signature="v0=" + "0" * 64)
        assert status == 401
        await bot.idle()
        assert bot.slack.calls_to("chat.postMessage") == []

    async def test_stale_signature_is_rejected(self, bot: BotUnderTest) -> None:
        status = await _post_raw(bot, _question(bot), timestamp=int(time.time()) - 600)
        assert status == 401
        await bot.idle()
        assert bot.slack.calls_to("chat.postMessage") == []

    async def test_malformed_json_is_a_clear_400(self, bot: BotUnderTest) -> None:
        assert await _post_raw(bot, b'{"type": "event_callback", ') == 400
        assert await _post_raw(bot, b"[1, 2]") == 400

    async def test_unknown_event_types_are_acknowledged_and_ignored(
        self, bot: BotUnderTest
    ) -> None:
        body = json.dumps(event_envelope({"type": "reaction_added", "user": "UALICE"})).encode()
        assert await _post_raw(bot, body) == 200
        await bot.idle()
        assert bot.slack.calls_to("chat.postMessage") == []

    async def test_url_verification_challenge(self, bot: BotUnderTest) -> None:
        body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "t"})
        status, text, _ = await post_event(
            bot.http, bot.events_url, body.encode(), signing_secret=SIGNING_SECRET
        )
        assert status == 200 and "abc123" in text


@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_an_ack_does_not_wait_for_the_connections_answer_work_holds(
    make_bot: BotFactory,
) -> None:
    """Every connection of the answer path is held in an open transaction (as when many
    turns run at once): a message is still acked while they are held, and answered once they
    are free. Before intake had connections of its own, the ack waited for one (SQLite) or
    failed after the pool's 2 s (PostgreSQL)."""
    async with make_bot(DB_POOL_SIZE="1") as bot:
        assert bot.bot is not None
        engine = bot.bot.engine
        capacity = 1 if engine.dialect.name == "sqlite" else 2  # DB_POOL_SIZE=1, +1 in bursts
        async with AsyncExitStack() as held:
            for _ in range(capacity):
                connection = await held.enter_async_context(engine.connect())
                await connection.scalar(select(func.count()).select_from(Conversation))
            question = await asyncio.wait_for(bot.mention("are you there?"), timeout=10)
            assert bot.statuses == [200]
        await bot.wait_for_answers("C0001", question.ts)


@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_a_write_answer_work_holds_delays_no_ack_or_fails_none(
    make_bot: BotFactory,
) -> None:
    """Answer work holds a write transaction: on PostgreSQL (row locks) a message in
    another thread is acked meanwhile; on SQLite (one writer at a time) the ack waits for
    the commit instead of failing with "database is locked"."""
    async with make_bot() as bot:
        assert bot.bot is not None
        engine = bot.bot.engine
        first = await bot.mention("hello")
        await bot.wait_for_answers("C0001", first.ts)
        async with engine.begin() as connection:
            await connection.execute(
                update(Conversation).values(updated_at=Conversation.updated_at)
            )
            ack = asyncio.ensure_future(bot.mention("and now?", channel="C0002"))
            if engine.dialect.name == "postgresql":
                await asyncio.wait_for(asyncio.shield(ack), timeout=10)
            else:
                await asyncio.sleep(1.0)  # the ack's write waits for this one meanwhile
        question = await asyncio.wait_for(ack, timeout=10)
        assert bot.statuses == [200, 200]
        await bot.wait_for_answers("C0002", question.ts)


@ON_SQLITE
@ON_ONE_BACKEND
async def test_allow_lists_keep_other_teams_and_channels_out(make_bot: BotFactory) -> None:
    async with make_bot(ALLOWED_CHANNEL_IDS="C0001", ALLOWED_TEAM_IDS="T0001") as bot:
        outside = await bot.mention("hello from elsewhere", channel="COTHER")
        inside = await bot.mention("hello from here")
        dm = await bot.dm("a DM is not a channel")
        await bot.wait_for_answers("C0001", inside.ts)
        await bot.wait_for_answers("D0001", dm.ts)
        await bot.idle()
        assert bot.slack.bot_replies("COTHER", outside.ts) == []


@ON_ONE_BACKEND
async def test_per_user_rate_limit_replies_politely(make_bot: BotFactory) -> None:
    async with make_bot(USER_RATE_LIMIT_PER_MINUTE="2") as bot:
        first = await bot.dm("one")
        second = await bot.dm("two")
        third = await bot.dm("three")
        await bot.wait_for_answers("D0001", first.ts)
        await bot.wait_for_answers("D0001", second.ts)
        await bot.slack.wait_for(lambda: bool(bot.slack.ephemerals))
        await bot.idle()
        assert bot.slack.bot_replies("D0001", third.ts) == []
        assert "faster than I can answer" in bot.slack.ephemerals[0].text
        other = await bot.dm("someone else", user="UBOB")
        await bot.wait_for_answers("D0001", other.ts)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_logs_at_info_hold_no_message_text_and_no_secrets(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with make_bot() as bot:
        bot.openai.script_runs("failed")
        first = await bot.mention("my password is hunter2")
        await bot.wait_for_answers("C0001", first.ts)
        second = await bot.mention("and the door code is 4711")
        await bot.wait_for_answers("C0001", second.ts)
    logged = caplog.text
    assert logged, "the bot logs at INFO"
    for secret in ("hunter2", "4711", bot.slack.bot_token, bot.openai.api_key, SIGNING_SECRET):
        assert secret not in logged


def _signed(body: bytes, *, timestamp: str, content_type: str) -> dict[str, str]:
    """Headers as Slack computes them: the HMAC over the raw bytes, whatever they hold."""
    base = b"v0:" + timestamp.encode() + b":" + body
    digest = hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest}",
    }


NOW = 1_700_000_000
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
EVENT = b'{"type": "event_callback", "event": {}}'


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        pytest.param(EVENT, _signed(EVENT, timestamp=str(NOW), content_type=JSON), None, id="ok"),
        pytest.param(
            b"payload=%7B%22type%22%3A%22block_actions%22%7D",
            _signed(
                b"payload=%7B%22type%22%3A%22block_actions%22%7D",
                timestamp=str(NOW),
                content_type=FORM,
            ),
            None,
            id="form with a JSON payload",
        ),
        pytest.param(
            b"command=%2Fassistant&text=help",
            _signed(b"command=%2Fassistant&text=help", timestamp=str(NOW), content_type=FORM),
            None,
            id="slash command form",
        ),
        pytest.param(
            EVENT,
            {**_signed(EVENT, timestamp=str(NOW), content_type=JSON), "X-Slack-Signature": "v0=0"},
            Rejection.BAD_SIGNATURE,
            id="forged",
        ),
        pytest.param(
            EVENT,
            _signed(EVENT, timestamp=str(NOW - 301), content_type=JSON),
            Rejection.BAD_SIGNATURE,
            id="stale",
        ),
        pytest.param(
            EVENT,
            _signed(EVENT, timestamp="abc", content_type=JSON),
            Rejection.BAD_SIGNATURE,
            id="timestamp not a number",
        ),
        pytest.param(
            EVENT,
            _signed(EVENT, timestamp=" 1700000000", content_type=JSON),
            Rejection.BAD_SIGNATURE,
            id="timestamp with a space",
        ),
        pytest.param(
            EVENT,
            {"Content-Type": JSON},
            Rejection.BAD_SIGNATURE,
            id="unsigned",
        ),
        pytest.param(
            b'{"text": "\xff\xfe"}',
            _signed(b'{"text": "\xff\xfe"}', timestamp=str(NOW), content_type=JSON),
            Rejection.NOT_UTF8,
            id="not utf-8",
        ),
        pytest.param(
            b"payload=not-json",
            _signed(b"payload=not-json", timestamp=str(NOW), content_type=FORM),
            Rejection.MALFORMED_BODY,
            id="form payload not JSON",
        ),
        pytest.param(
            b"payload=%5B1%5D",
            _signed(b"payload=%5B1%5D", timestamp=str(NOW), content_type=FORM),
            Rejection.MALFORMED_BODY,
            id="form payload not an object",
        ),
        pytest.param(
            b"{broken",
            _signed(b"{broken", timestamp=str(NOW), content_type=FORM),
            Rejection.MALFORMED_BODY,
            id="form type but a JSON body",
        ),
        pytest.param(
            b"[1, 2]",
            _signed(b"[1, 2]", timestamp=str(NOW), content_type=JSON),
            Rejection.MALFORMED_BODY,
            id="JSON not an object",
        ),
    ],
)
def test_check_request(body: bytes, headers: dict[str, str], expected: Rejection | None) -> None:
    assert check_request(body, headers, signing_secret=SIGNING_SECRET, now=NOW) == expected


def test_check_request_refuses_everything_without_a_signing_secret() -> None:
    headers = _signed(EVENT, timestamp=str(NOW), content_type=JSON)
    assert check_request(EVENT, headers, signing_secret="", now=NOW) is Rejection.BAD_SIGNATURE


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
@pytest.mark.parametrize(
    ("body", "timestamp", "content_type"),
    [
        pytest.param(EVENT, "abc", JSON, id="timestamp abc"),
        pytest.param(b'{"type": "event_callback", "x": "\xff"}', None, JSON, id="not utf-8"),
        pytest.param(b"payload=%7Bnot+json", None, FORM, id="form payload not JSON"),
    ],
)
async def test_malformed_requests_get_a_4xx_without_a_traceback(
    bot: BotUnderTest,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    timestamp: str | None,
    content_type: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = _signed(body, timestamp=timestamp or str(int(time.time())), content_type=content_type)
    async with bot.http.post(bot.events_url, data=body, headers=headers) as response:
        assert 400 <= response.status < 500, await response.text()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_a_failed_ack_write_keeps_the_message_out_of_the_logs(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLAlchemy puts a failed statement's parameters in its error text; the message must
    still not reach the log, and Slack must hear of the failure so that it redelivers."""
    assert bot.bot is not None
    async with bot.bot.engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE TRIGGER full_disk BEFORE INSERT ON inbox_messages "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        )
    caplog.set_level(logging.INFO)
    secret = "the launch code is swordfish-7781"
    message = bot.slack.add_message("C0001", user="UALICE", text=f"<@UBOT> {secret}")
    status = await bot.deliver(mention(text=f"<@UBOT> {secret}", user="UALICE", ts=message.ts))
    assert not 200 <= status < 300, "Slack must redeliver a message the bot did not store"
    assert "disk is full" in caplog.text, "the failure itself is logged"
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            shown = caplog.handler.format(record)
            assert "swordfish" not in shown, shown


# Slack Connect: a channel shared with another organisation ---------------------------------

EXTERNAL_TEAM = "TEXTERNAL"


def _external(event: dict[str, Any]) -> dict[str, Any]:
    """How Slack marks a message from a user of another organisation in a shared channel:
    the event names the writer's team, the envelope the workspace it is delivered to."""
    return {
        **event,
        "team": EXTERNAL_TEAM,
        "user_team": EXTERNAL_TEAM,
        "source_team": EXTERNAL_TEAM,
    }


@pytest.mark.parametrize(
    ("body", "event", "workspace", "user_team"),
    [
        pytest.param(
            event_envelope({}, team_id="T0001"), {"team": "T0001"}, "T0001", "T0001", id="local"
        ),
        pytest.param(
            event_envelope({}, team_id="T0001"),
            _external({}),
            "T0001",
            EXTERNAL_TEAM,
            id="external user",
        ),
        pytest.param(
            {**event_envelope({}, team_id=EXTERNAL_TEAM), "authorizations": [{"team_id": "T0001"}]},
            _external({}),
            "T0001",
            EXTERNAL_TEAM,
            id="authorizations name the receiving workspace",
        ),
        pytest.param({"team_id": "T0001"}, {}, "T0001", "T0001", id="no team in the event"),
        pytest.param({}, {"team": "T0001"}, "T0001", "T0001", id="no team in the envelope"),
    ],
)
def test_workspace_and_user_team(
    body: dict[str, Any], event: dict[str, Any], workspace: str, user_team: str
) -> None:
    assert team_of(body, event) == workspace
    assert user_team_of(body, event) == user_team


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_an_external_user_continues_the_channels_conversation(bot: BotUnderTest) -> None:
    bot.slack.add_user("UEXT", display_name="Erin")
    question = await bot.mention("what is our SLA?")
    await bot.wait_for_answers("C0001", question.ts)
    follow_up = bot.slack.add_message(
        "C0001", user="UEXT", text="and on weekends?", thread_ts=question.ts
    )
    event = channel_message(
        text="and on weekends?", user="UEXT", ts=follow_up.ts, thread_ts=question.ts
    )
    assert await bot.deliver(_external(event)) == 200
    answers = await bot.wait_for_answers("C0001", question.ts, count=2)
    assert [a.text for a in answers] == [
        "Echo: Alice: what is our SLA?",
        "Echo: Erin: and on weekends?",
    ]
    assert len(bot.openai.conversations) == 1, "one conversation for the whole thread"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_allowed_team_ids_checks_the_users_own_team(make_bot: BotFactory) -> None:
    async with make_bot(ALLOWED_TEAM_IDS="T0001") as bot:
        bot.slack.add_user("UEXT", display_name="Erin")
        said = f"<@{bot.slack.bot_user_id}> hello from outside"
        outside = bot.slack.add_message("C0001", user="UEXT", text=said)
        assert await bot.deliver(_external(mention(text=said, user="UEXT", ts=outside.ts))) == 200
        inside = await bot.mention("hello from here")
        await bot.wait_for_answers("C0001", inside.ts)
        await bot.idle()
        assert bot.slack.bot_replies("C0001", outside.ts) == []
