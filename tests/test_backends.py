"""Backend choice and what each backend sends; switching backends mid-thread."""

from __future__ import annotations

import pytest

from bot.settings import load_settings
from tests.conftest import BotFactory
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest, bot_env

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "OPENAI_API_KEY": "k"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "responses"),
        ({"OPENAI_ASSISTANT_ID": "asst_1"}, "threads"),
        ({"OPENAI_ASSISTANT_ID": "asst_1", "ASSISTANT_API": "responses"}, "responses"),
        ({"ASSISTANT_API": "responses"}, "responses"),
    ],
)
def test_backend_is_chosen_from_settings(env: dict[str, str], expected: str) -> None:
    assert load_settings({**BASE, **env}, dotenv_path=None).assistant_api == expected


def test_instructions_can_come_from_a_file(tmp_path: object) -> None:
    path = f"{tmp_path}/instructions.md"
    with open(path, "w", encoding="utf-8") as file:
        file.write("Answer like a pirate.\n")
    settings = load_settings({**BASE, "ASSISTANT_INSTRUCTIONS_FILE": path}, dotenv_path=None)
    assert settings.assistant_instructions == "Answer like a pirate."


@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_responses_backend_sends_model_instructions_and_hosted_tools(
    make_bot: BotFactory,
) -> None:
    async with make_bot(
        ASSISTANT_INSTRUCTIONS="Be brief.",
        OPENAI_WEB_SEARCH="true",
        OPENAI_VECTOR_STORE_IDS="vs_1, vs_2",
    ) as bot:
        question = await bot.mention("search the web")
        await bot.wait_for_answers("C0001", question.ts)
        (create,) = bot.openai.requests_to("POST", r"/v1/responses")
        body = create.body
        assert body["model"] == "gpt-test"
        assert body["instructions"] == "Be brief."
        assert body["background"] is True and body["store"] is True
        assert {"type": "web_search"} in body["tools"]
        assert {"type": "file_search", "vector_store_ids": ["vs_1", "vs_2"]} in body["tools"]
        assert body["conversation"].startswith("conv")


async def test_thread_continues_after_the_deployment_switches_backend(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    recorder: list[list[str]] = []

    def reply(texts: list[str]) -> str:
        recorder.append(list(texts))
        return f"answer {len(recorder)}"

    openai_fake.reply = reply
    threads_env = bot_env(
        slack=slack, openai=openai_fake, database_url=database_url, assistant_api="threads"
    )
    async with BotUnderTest.running(threads_env, slack=slack, openai=openai_fake) as bot:
        question = await bot.mention("the secret word is pineapple")
        await bot.wait_for_answers("C0001", question.ts)
        await bot.idle()
    responses_env = {**threads_env, "ASSISTANT_API": "responses"}
    async with BotUnderTest.running(responses_env, slack=slack, openai=openai_fake) as bot:
        await bot.reply("what was the secret word?", thread_ts=question.ts)
        answers = await bot.wait_for_answers("C0001", question.ts, count=2)
        assert [a.text for a in answers] == ["answer 1", "answer 2"]
        seen = "\n".join(recorder[-1])
        assert "the secret word is pineapple" in seen
        assert "Assistant: answer 1" in seen
        assert "what was the secret word?" in seen
        assert len(openai_fake.conversations) == 1
