"""Issue 10 end to end: `/assistant` settings per channel, the off switch, budgets, the 👎
form and the admin view, through the real bot and the fake Slack and OpenAI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from bot.admin.home_view import REASON_ACTION, REASON_BLOCK
from bot.store.admin_models import SettingsChange
from bot.store.models import Feedback
from tests.conftest import ON_ONE_BACKEND, ON_SQLITE, BotFactory
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import RUN_STARTS, BotUnderTest, bot_env

CHANNEL_INSTRUCTIONS = "Answer like a pirate."


@pytest.fixture
def admins(slack: FakeSlack) -> FakeSlack:
    """UADMIN is a workspace admin (users.info says so); Alice and Bob are members."""
    slack.add_user("UADMIN", display_name="Ada", is_admin=True)
    slack.add_user("UOWNER", display_name="Olga", is_primary_owner=True)
    slack.add_channel("C0002", name="pirates")
    return slack


def run_starts(openai: FakeOpenAI) -> list[dict[str, Any]]:
    return [request.body for request in openai.requests_to("POST", RUN_STARTS)]


def instructions_of(body: dict[str, Any]) -> str:
    """The instructions a run, response or chat completion was started with."""
    system = [m["content"] for m in body.get("messages") or [] if m.get("role") == "system"]
    if system:
        return str(system[0])
    return str(body.get("instructions") or body.get("additional_instructions") or "")


async def ask(bot: BotUnderTest, text: str, *, channel: str, user: str = "UALICE") -> str:
    question = await bot.mention(text, channel=channel, user=user)
    (answer,) = await bot.wait_for_answers(channel, question.ts)
    return answer.text


# How a channel's instructions and model reach the model is each backend's; they are stored
# and read as any other row (on PostgreSQL: test_two_processes_share_settings_and_budgets).
@pytest.mark.both_slack_modes
@ON_SQLITE
async def test_an_admin_gives_one_channel_its_own_instructions_and_model(
    admins: FakeSlack, make_bot: BotFactory
) -> None:
    async with make_bot(ASSISTANT_INSTRUCTIONS="Be brief.") as bot:
        status, reply = await bot.command(
            f"instructions {CHANNEL_INSTRUCTIONS}", user="UADMIN", channel="C0002"
        )
        assert status == 200 and reply["response_type"] == "ephemeral"
        assert "own instructions" in reply["text"]
        _, reply = await bot.command("model gpt-5-nano", user="UOWNER", channel="C0002")
        assert "gpt-5-nano" in reply["text"]

        await ask(bot, "ahoy?", channel="C0002")
        await ask(bot, "hello?", channel="C0001")

        pirate, default = run_starts(bot.openai)
        assert instructions_of(pirate) == f"Be brief.\n\n{CHANNEL_INSTRUCTIONS}"
        assert pirate["model"] == "gpt-5-nano"
        assert instructions_of(default) == "Be brief."
        assert default.get("model") in (None, "gpt-test")

        _, shown = await bot.command("show", user="UALICE", channel="C0002")
        assert "gpt-5-nano" in shown["text"] and CHANNEL_INSTRUCTIONS in shown["text"]

        _, reply = await bot.command("instructions reset", user="UADMIN", channel="C0002")
        _, reply = await bot.command("model reset", user="UADMIN", channel="C0002")
        await ask(bot, "back to normal?", channel="C0002")
        assert instructions_of(run_starts(bot.openai)[-1]) == "Be brief."

        assert bot.bot is not None
        async with bot.bot.engine.connect() as connection:
            log = (
                (
                    await connection.execute(
                        select(
                            SettingsChange.user_id, SettingsChange.field, SettingsChange.new_value
                        ).order_by(SettingsChange.id)
                    )
                )
                .tuples()
                .all()
            )
        assert log == [
            ("UADMIN", "instructions", CHANNEL_INSTRUCTIONS),
            ("UOWNER", "model", "gpt-5-nano"),
            ("UADMIN", "instructions", None),
            ("UADMIN", "model", None),
        ]


@pytest.mark.both_slack_modes
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_member_cannot_change_settings_but_may_read_them(
    admins: FakeSlack, make_bot: BotFactory
) -> None:
    async with make_bot() as bot:
        for change in ("instructions Be rude.", "model gpt-4o", "off", "budget 1 usd per day"):
            status, reply = await bot.command(change, user="UBOB")
            assert status == 200 and "only workspace admins" in reply["text"]
        _, shown = await bot.command("show", user="UBOB")
        assert "(default)" in shown["text"] and "Answers here: on" in shown["text"]
        _, helped = await bot.command("frobnicate", user="UBOB")
        assert "frobnicate" in helped["text"] and "/assistant show" in helped["text"]

        await ask(bot, "still default?", channel="C0001")
        (start,) = run_starts(bot.openai)
        assert "Be rude" not in json.dumps(start)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_admin_user_ids_may_change_settings(admins: FakeSlack, make_bot: BotFactory) -> None:
    async with make_bot(ADMIN_USER_IDS="UBOB") as bot:
        _, reply = await bot.command("model gpt-4o", user="UBOB")
        assert "`gpt-4o`" in reply["text"]
        assert not bot.slack.calls_to("users.info") or all(
            call.args.get("user") != "UBOB" for call in bot.slack.calls_to("users.info")
        )


@pytest.mark.both_slack_modes
@ON_ONE_BACKEND
async def test_off_silences_a_channel_with_one_note_per_mention(
    admins: FakeSlack, make_bot: BotFactory
) -> None:
    async with make_bot() as bot:
        _, reply = await bot.command("off", user="UADMIN")
        assert "off in this channel" in reply["text"]
        question = await bot.mention("anyone home?", user="UBOB")
        await bot.slack.wait_for(lambda: len(bot.slack.ephemerals) == 1)
        (note,) = bot.slack.ephemerals
        assert note.user == "UBOB" and "switched off" in note.text and "/assistant on" in note.text
        await bot.idle()
        assert bot.slack.bot_replies("C0001", question.ts) == []
        assert run_starts(bot.openai) == []

        # Elsewhere the bot still answers; and back on, here too.
        assert await ask(bot, "and here?", channel="C0002")
        await bot.command("on", user="UADMIN")
        assert await ask(bot, "now?", channel="C0001")
        assert len(bot.slack.ephemerals) == 1


# A budget refuses before any backend plays a part, and what each backend reports as a
# turn's usage is tests/test_turn_usage.py's; the sums per day and month are SQL (both).
@pytest.mark.both_slack_modes
@ON_ONE_BACKEND
async def test_a_budget_refuses_the_message_over_it_without_calling_openai(
    admins: FakeSlack, make_bot: BotFactory
) -> None:
    async with make_bot(USER_DAILY_TOKEN_LIMIT="1") as bot:
        await ask(bot, "first question", channel="C0001")
        assert len(run_starts(bot.openai)) == 1
        refusal = await ask(bot, "second question", channel="C0001")
        assert "daily limit per person" in refusal and "resets" in refusal
        assert len(run_starts(bot.openai)) == 1  # no OpenAI call for the refused message

        # Another person still gets answers; a channel budget then stops everyone there.
        assert "Echo" in await ask(bot, "bob asks", channel="C0001", user="UBOB")
        _, reply = await bot.command("budget 1 tokens per month", user="UADMIN", channel="C0002")
        assert "1 tokens per month" in reply["text"]
        assert "Echo" in await ask(bot, "pirates first", channel="C0002", user="UADMIN")
        refusal = await ask(bot, "pirates again", channel="C0002", user="UOWNER")
        assert "this channel's budget" in refusal
        assert len(run_starts(bot.openai)) == 3


@pytest.mark.both_slack_modes
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_usage_command_shows_the_channel_and_the_caller(
    admins: FakeSlack, make_bot: BotFactory
) -> None:
    async with make_bot() as bot:
        await ask(bot, "one", channel="C0001")
        await ask(bot, "two", channel="C0001", user="UBOB")
        _, reply = await bot.command("usage", user="UBOB")
        lines = reply["text"].splitlines()
        assert "This channel: 2 answers" in lines[1]
        assert "Yours here: 1 answer," in lines[2]
        assert "tokens, about $" in lines[1] or "unknown price" in lines[1]


@pytest.mark.both_slack_modes
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_thumbs_down_asks_why_and_the_admin_view_shows_it(
    admins: FakeSlack, make_bot: BotFactory
) -> None:
    async with make_bot(OPENAI_MODEL="gpt-5-mini") as bot:
        question = await bot.mention("what is 2+2?")
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
        assert await bot.click(answer, "feedback_down", user="UBOB") == 200
        await bot.slack.wait_for(lambda: len(bot.slack.opened_views) == 1)
        (form,) = bot.slack.opened_views
        values = {REASON_BLOCK: {REASON_ACTION: {"type": "plain_text_input", "value": "Wrong sum"}}}
        assert await bot.submit_view(form, values, user="UBOB") == 200

        assert bot.bot is not None
        async with bot.bot.engine.connect() as connection:
            stored = (
                (
                    await connection.execute(
                        select(Feedback.user_id, Feedback.value, Feedback.reason)
                    )
                )
                .tuples()
                .all()
            )
        assert stored == [("UBOB", "down", "Wrong sum")]

        await bot.command("model gpt-5-nano", user="UADMIN", channel="C0002")
        for user in ("UADMIN", "UBOB"):
            await bot.deliver({"type": "app_home_opened", "user": user, "tab": "home"})
        await bot.slack.wait_for(lambda: {"UADMIN", "UBOB"} <= set(bot.slack.home_views))
        admin_view = json.dumps(bot.slack.home_views["UADMIN"], ensure_ascii=False)
        assert "admin view" in admin_view
        assert "<#C0001>: 1 answer," in admin_view and "$" in admin_view  # gpt-5-mini is priced
        assert "👎 1" in admin_view and "Wrong sum" in admin_view
        assert "<#C0002>: model `gpt-5-nano`" in admin_view
        assert "Errors in the last 24 hours:* 0" in admin_view
        member_view = json.dumps(bot.slack.home_views["UBOB"], ensure_ascii=False)
        assert "admin view" not in member_view and "mention me" in member_view


async def test_two_processes_share_settings_and_budgets(
    admins: FakeSlack, openai_fake: FakeOpenAI, postgres_url: str
) -> None:
    env = bot_env(
        slack=admins, openai=openai_fake, database_url=postgres_url, assistant_api="responses"
    )
    async with (
        BotUnderTest.running(env, slack=admins, openai=openai_fake) as one,
        BotUnderTest.running(env, slack=admins, openai=openai_fake) as two,
    ):
        await one.command(f"instructions {CHANNEL_INSTRUCTIONS}", user="UADMIN", channel="C0002")
        await one.command("budget 1 tokens per day", user="UADMIN", channel="C0002")
        await two.command("off", user="UADMIN", channel="C0001")

        assert "Echo" in await ask(two, "ahoy?", channel="C0002")
        assert instructions_of(run_starts(openai_fake)[-1]) == CHANNEL_INSTRUCTIONS
        refusal = await ask(one, "ahoy again?", channel="C0002")
        assert "this channel's budget" in refusal
        assert len(run_starts(openai_fake)) == 1

        await one.mention("hello?", channel="C0001", user="UBOB")
        await admins.wait_for(lambda: len(admins.ephemerals) == 1)
        assert "switched off" in admins.ephemerals[0].text
