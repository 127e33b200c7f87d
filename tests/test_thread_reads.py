"""Reading a thread's history within Slack's limits for apps outside the Marketplace
(conversations.replies once a minute, 15 messages a request): what the bot stored is used
first, and a rate-limited read degrades to a short note instead of stalling the answer."""

from __future__ import annotations

import time

from bot.turns.prompt import PARTIAL_HISTORY_NOTE
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest, bot_env


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> str:
        self.seen.append("\n".join(texts))
        return f"answer {len(self.seen)}"


async def test_a_backend_switch_rebuilds_the_thread_from_what_the_bot_stored(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    slack.distributed_app_limits = True
    recorder = Recorder()
    openai_fake.reply = recorder
    env = bot_env(slack=slack, openai=openai_fake, database_url=database_url, assistant_api="chat")
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        question = await bot.mention("the secret word is pineapple")
        await bot.wait_for_answers("C0001", question.ts)
        await bot.reply("and the colour is teal", thread_ts=question.ts, user="UBOB")
        await bot.wait_for_answers("C0001", question.ts, count=2)
    async with BotUnderTest.running(
        {**env, "ASSISTANT_API": "responses"}, slack=slack, openai=openai_fake
    ) as bot:
        await bot.reply("what were the word and the colour?", thread_ts=question.ts)
        await bot.wait_for_answers("C0001", question.ts, count=3)
    seen = recorder.seen[-1]
    assert "the secret word is pineapple" in seen and "Bob: and the colour is teal" in seen
    assert "Assistant: answer 1" in seen and "Assistant: answer 2" in seen
    assert slack.calls_to("conversations.replies") == []


async def test_a_rate_limited_read_answers_at_once_with_a_note(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    recorder = Recorder()
    openai_fake.reply = recorder
    parent = slack.add_message("C0001", user="UBOB", text="Our deploy failed with error E42")
    # Slack asks for a minute's wait: the answer must not wait it out.
    slack.fail_next("conversations.replies", status=429, retry_after=60)
    env = bot_env(
        slack=slack, openai=openai_fake, database_url=database_url, assistant_api="responses"
    )
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        started = time.monotonic()
        await bot.mention("any idea what E42 means?", thread_ts=parent.ts)
        [answer] = await bot.wait_for_answers("C0001", parent.ts, timeout=60)
        assert time.monotonic() - started < 20
    assert answer.text == "answer 1"
    assert PARTIAL_HISTORY_NOTE in recorder.seen[0]
    assert "any idea what E42 means?" in recorder.seen[0]
    assert [c.status for c in slack.calls_to("conversations.replies")] == [429]


async def test_a_long_thread_is_read_in_pages_of_15_until_the_limit(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    slack.distributed_app_limits = True
    recorder = Recorder()
    openai_fake.reply = recorder
    parent = slack.add_message("C0001", user="UBOB", text="message 0")
    for n in range(1, 30):
        slack.add_message("C0001", user="UBOB", text=f"message {n}", thread_ts=parent.ts)
    env = bot_env(
        slack=slack, openai=openai_fake, database_url=database_url, assistant_api="responses"
    )
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        await bot.mention("summarise please", thread_ts=parent.ts)
        await bot.wait_for_answers("C0001", parent.ts, timeout=60)
    reads = slack.calls_to("conversations.replies")
    assert [c.status for c in reads] == [200, 429]
    seen = recorder.seen[0]
    assert "message 0" in seen and "message 14" in seen and "message 15" not in seen
    assert PARTIAL_HISTORY_NOTE in seen
