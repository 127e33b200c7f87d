"""What reaches `POST /slack/events`: forged, stale, malformed and unexpected requests, and
the policies applied before a message is taken (allow-lists, per-user rate limit)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from tests.conftest import BotFactory
from tests.fakes.events import event_envelope, mention, post_event
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


async def test_allow_lists_keep_other_teams_and_channels_out(make_bot: BotFactory) -> None:
    async with make_bot(ALLOWED_CHANNEL_IDS="C0001", ALLOWED_TEAM_IDS="T0001") as bot:
        outside = await bot.mention("hello from elsewhere", channel="COTHER")
        inside = await bot.mention("hello from here")
        dm = await bot.dm("a DM is not a channel")
        await bot.wait_for_answers("C0001", inside.ts)
        await bot.wait_for_answers("D0001", dm.ts)
        await bot.idle()
        assert bot.slack.bot_replies("COTHER", outside.ts) == []


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
