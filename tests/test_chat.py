"""The chat backend (ASSISTANT_API=chat): the bot is the thread, and long threads keep going.

End to end through the real bot and the fake OpenAI's Chat Completions; the backend alone
where a Slack thread would add nothing (per-turn options, the stored thread).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.assistants.base import (
    RunCheck,
    RunLookup,
    RunState,
    StreamStarted,
    TurnOptions,
    TurnRequest,
)
from bot.assistants.chat import RUN_PREFIX, ChatBackend
from bot.assistants.chat_history import SUMMARY_HEADING
from bot.assistants.context import CUT_NOTE
from bot.assistants.turn_tools import TurnTools
from bot.attachments import Image, image_data_url
from bot.replies import OUTCOME_MESSAGES
from bot.settings import SettingsError, load_settings
from bot.settings import database_url as async_url
from bot.settings_parse import NO_KEY
from bot.store.chat_models import ChatMessage, ChatSummary
from bot.store.db import create_engine, migrate
from tests.conftest import BotFactory
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest, bot_env

CHAT = r"/v1/chat/completions"
BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}


# Settings --------------------------------------------------------------------------------


def test_chat_needs_no_api_key_but_the_other_backends_do() -> None:
    settings = load_settings({**BASE, "ASSISTANT_API": "chat"}, dotenv_path=None)
    assert settings.assistant_api == "chat" and settings.openai_api_key == NO_KEY
    with pytest.raises(SettingsError, match="missing settings: OPENAI_API_KEY"):
        load_settings({**BASE, "ASSISTANT_API": "responses"}, dotenv_path=None)


@pytest.mark.parametrize(("raw", "expected"), [("", None), ("8000", 8000), ("200000", 200_000)])
def test_context_tokens_setting(raw: str, expected: int | None) -> None:
    env = {**BASE, "OPENAI_API_KEY": "k", "CONTEXT_TOKENS": raw}
    assert load_settings(env, dotenv_path=None).context_tokens == expected


def test_context_tokens_must_be_a_sensible_number() -> None:
    env = {**BASE, "OPENAI_API_KEY": "k", "CONTEXT_TOKENS": "12"}
    with pytest.raises(SettingsError, match="CONTEXT_TOKENS must be between 500"):
        load_settings(env, dotenv_path=None)


# The backend alone -----------------------------------------------------------------------


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(async_url(database_url))
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def backend(openai_fake: FakeOpenAI, engine: AsyncEngine) -> AsyncIterator[ChatBackend]:
    client = AsyncOpenAI(api_key=openai_fake.api_key, base_url=openai_fake.base_url)
    chat = ChatBackend(client, engine, model="gpt-test", instructions="Be kind.")
    yield chat
    await chat.close()


async def checked(backend: ChatBackend, thread_id: str, run_id: str, tools: TurnTools) -> RunCheck:
    events = [e async for e in backend.check_run(thread_id=thread_id, run_id=run_id, tools=tools)]
    final = events[-1]
    assert isinstance(final, RunCheck)
    return final


async def start(backend: ChatBackend, request: TurnRequest, tools: TurnTools) -> str:
    """Start a run in the background (polled delivery): its id."""
    events = [e async for e in backend.respond(request, tools)]
    assert len(events) == 1 and isinstance(events[0], StreamStarted), events
    return events[0].run_id


async def wait_done(backend: ChatBackend, thread_id: str, run_id: str, tools: TurnTools) -> str:
    """The answer, read within the check (a chat run is read by the call that follows it)."""
    check = await checked(backend, thread_id, run_id, tools)
    assert check.state is RunState.COMPLETED, check
    return check.text


async def test_channel_model_and_instructions_apply(
    backend: ChatBackend, openai_fake: FakeOpenAI
) -> None:
    thread_id = await backend.create_thread(metadata={})
    options = TurnOptions(model="gpt-channel", instructions="Answer in French.")
    tools = TurnTools()
    request = TurnRequest(thread_id, "hello", "turn-1", options=options, streamed=False)
    run_id = await start(backend, request, tools)
    assert await wait_done(backend, thread_id, run_id, tools) == "Echo: hello"
    (completion,) = openai_fake.chat_completions
    assert completion.model == "gpt-channel"
    assert completion.system == "Be kind.\n\nAnswer in French."


async def test_the_stored_thread_is_sent_and_a_turn_is_stored_once(
    backend: ChatBackend, openai_fake: FakeOpenAI, engine: AsyncEngine
) -> None:
    thread_id = await backend.create_thread(metadata={})
    t1, t2 = TurnTools(), TurnTools()
    first = await start(backend, TurnRequest(thread_id, "my name is Ann", "t1", streamed=False), t1)
    await wait_done(backend, thread_id, first, t1)
    second = await start(backend, TurnRequest(thread_id, "who am I?", "t2", streamed=False), t2)
    await wait_done(backend, thread_id, second, t2)
    assert openai_fake.chat_completions[-1].messages[1:] == [
        {"role": "user", "content": "my name is Ann"},
        {"role": "assistant", "content": "Echo: my name is Ann"},
        {"role": "user", "content": "who am I?"},
    ]
    # Starting a turn again (a retried start) neither stores nor asks anything twice.
    again = TurnTools()  # a later attempt, maybe in another process
    found = await backend.find_run(RunLookup(thread_id, "t2", "", None), again)
    assert found == second
    check = await checked(backend, thread_id, RUN_PREFIX + "t2", again)
    assert check.text == "Echo: who am I?"
    async with engine.connect() as connection:
        stored = await connection.scalar(select(func.count()).select_from(ChatMessage))
    assert stored == 4 and len(openai_fake.chat_completions) == 2
    await backend.delete_thread(thread_id)
    async with engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(ChatMessage)) == 0


async def test_images_go_with_their_own_turn_only(
    backend: ChatBackend, openai_fake: FakeOpenAI, engine: AsyncEngine
) -> None:
    thread_id = await backend.create_thread(metadata={})
    image = Image("chart.png", "image/png", b"\x89PNG")
    i1, i2 = TurnTools(), TurnTools()
    request = TurnRequest(thread_id, "look", "i1", images=[image], streamed=False)
    first = await start(backend, request, i1)
    await wait_done(backend, thread_id, first, i1)
    second = await start(backend, TurnRequest(thread_id, "and now?", "i2", streamed=False), i2)
    await wait_done(backend, thread_id, second, i2)
    with_image, without = openai_fake.chat_completions
    assert with_image.messages[-1]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": image_data_url(image)}},
    ]
    assert [m["content"] for m in without.messages[1:]] == ["look", "Echo: look", "and now?"]


async def test_streamed_answer_reports_its_usage(
    backend: ChatBackend, openai_fake: FakeOpenAI
) -> None:
    thread_id = await backend.create_thread(metadata={})
    events = [
        event async for event in backend.respond(TurnRequest(thread_id, "hi", "s1"), TurnTools())
    ]
    final = events[-1]
    assert not isinstance(final, str) and getattr(final, "state", None) is RunState.COMPLETED
    deltas = "".join(getattr(event, "text", "") for event in events[1:-1])
    assert deltas == "Echo: hi"
    usage = getattr(final, "usage", None)
    assert usage is not None and usage.model == "gpt-test" and usage.output_tokens > 0
    (request,) = openai_fake.requests_to("POST", CHAT)
    assert request.body["stream_options"] == {"include_usage": True}


# End to end ------------------------------------------------------------------------------


chat_only = pytest.mark.parametrize("assistant_api", ["chat"], indirect=True)
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@chat_only
async def test_a_server_error_is_retried_and_answered(bot: BotUnderTest) -> None:
    bot.openai.script_runs("failed")  # HTTP 500, or an error event in the middle of a stream
    question = await bot.mention("are you there?")
    answers = await bot.wait_for_answers("C0001", question.ts)
    assert [a.text for a in answers] == ["Echo: Alice: are you there?"]
    assert len(bot.openai.requests_to("POST", CHAT)) >= 2


@chat_only
async def test_a_message_larger_than_the_window_is_cut_with_a_note(
    make_bot: BotFactory,
) -> None:
    async with make_bot(CONTEXT_TOKENS="1000") as bot:
        bot.openai.context_chars = 3_000
        question = await bot.mention("please read this: " + "lorem ipsum " * 2_000)
        answers = await bot.wait_for_answers("C0001", question.ts)
        text = "\n".join(a.text for a in answers)
        assert text.startswith(CUT_NOTE)
        assert "Echo: Alice: please read this: lorem ipsum" in text
        (request,) = bot.openai.requests_to("POST", CHAT)
        assert request.status == 200
        assert len(request.body["messages"][-1]["content"]) < 3_000


@chat_only
@sqlite_only
async def test_context_length_error_is_retried_once_with_less_history(
    make_bot: BotFactory,
) -> None:
    async with make_bot(CONTEXT_TOKENS="4000", DELIVERY="poll") as bot:
        bot.openai.reply = lambda texts: f"answer {len(texts)}: " + "blah " * 400
        question = await bot.mention("first")
        for turn in range(2, 5):
            await bot.wait_for_answers("C0001", question.ts, count=turn - 1)
            await bot.reply(f"question {turn}", thread_ts=question.ts)
        await bot.wait_for_answers("C0001", question.ts, count=4)
        # The model's real window is smaller than CONTEXT_TOKENS says.
        bot.openai.context_chars = 7_000
        await bot.reply("question 5", thread_ts=question.ts)
        answers = await bot.wait_for_answers("C0001", question.ts, count=5)
        assert answers[-1].text.startswith("answer ")
        asked = [r for r in bot.openai.requests_to("POST", CHAT) if r.body.get("stream")]
        refused, accepted = asked[-2:]
        assert refused.status == 400 and accepted.status == 200
        assert len(str(accepted.body["messages"])) < len(str(refused.body["messages"]))

        bot.openai.context_chars = 20  # not even the question fits
        await bot.reply("question 6", thread_ts=question.ts)
        answers = await bot.wait_for_answers("C0001", question.ts, count=6)
        assert answers[-1].text == OUTCOME_MESSAGES["too_long"]
        assert [r.status for r in bot.openai.requests_to("POST", CHAT)[-2:]] == [400, 400]
        bot.openai.context_chars = None
        await bot.reply("question 7", thread_ts=question.ts)
        answers = await bot.wait_for_answers("C0001", question.ts, count=7)
        assert answers[-1].text.startswith("answer "), "the thread is not failing for ever"


async def _long_thread(bot: BotUnderTest, turns: int) -> list[str]:
    """A DM thread of `turns` questions, each answered before the next is asked."""
    first = await bot.dm("the secret word is pineapple")
    await bot.wait_for_answers("D0001", first.ts)
    for turn in range(2, turns + 1):
        await bot.dm(f"question number {turn}: what was the secret word?", thread_ts=first.ts)
        await bot.wait_for_answers("D0001", first.ts, count=turn, timeout=30)
    return [a.text for a in bot.answers("D0001", first.ts)]


TURNS = 60
API_MANAGED_TURNS = 12
"""Where the API keeps the thread (threads, responses) the bot sends only the new message and
the same truncation setting each time, and the fake holds no window to outgrow: a dozen
turns show what sixty would."""


@sqlite_only
@pytest.mark.parametrize("delivery", ["poll"], indirect=True)
async def test_a_long_thread_keeps_being_answered(make_bot: BotFactory) -> None:
    """On chat, far more than the window holds (1,000 tokens: the thread outgrows it three
    times and more): old turns are dropped for a summary that keeps the thread's memory. The
    other backends ask the API to manage the context itself, on every request."""
    async with make_bot(CONTEXT_TOKENS="1000") as bot:
        bot.openai.queue_s = bot.openai.run_s = 0.0
        turns = TURNS if bot.assistant_api == "chat" else API_MANAGED_TURNS
        if bot.assistant_api == "chat":
            bot.openai.context_chars = 3_000  # what 1,000 tokens hold at most
        answers = await _long_thread(bot, turns)
        assert len(answers) == turns
        assert answers[-1] == f"Echo: question number {turns}: what was the secret word?"
        if bot.assistant_api == "responses":
            creates = bot.openai.requests_to("POST", r"/v1/responses")
            assert len(creates) == turns
            assert all(r.body["truncation"] == "auto" for r in creates)
        elif bot.assistant_api == "threads":
            runs = bot.openai.requests_to("POST", r"/v1/threads/[^/]+/runs")
            assert len(runs) == turns
            strategy = {"type": "last_messages", "last_messages": 2}
            assert all(r.body["truncation_strategy"] == strategy for r in runs)
        else:
            requests = bot.openai.requests_to("POST", CHAT)
            assert all(r.status == 200 for r in requests)
            summaries = [c for c in bot.openai.chat_completions if not c.stream]
            assert 3 <= len(summaries) <= TURNS // 5, "made once per dropped range"
            last = bot.openai.chat_completions[-1]
            assert SUMMARY_HEADING in last.system
            assert "pineapple" in last.system, "the summary keeps the thread's memory"
            assert bot.bot is not None
            async with bot.bot.engine.connect() as connection:
                assert await connection.scalar(select(func.count()).select_from(ChatSummary)) == 1


async def test_azure_openai_recipe(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/azure.db",
        assistant_api="chat",
        AZURE_OPENAI_ENDPOINT=openai_fake.base_url.removesuffix("/v1"),
        AZURE_OPENAI_API_KEY=openai_fake.api_key,
        OPENAI_API_VERSION="2024-10-21",
        OPENAI_MODEL="my-gpt-4o-deployment",
    )
    del env["OPENAI_API_KEY"], env["OPENAI_BASE_URL"]
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        question = await bot.mention("hello Azure")
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
    assert answer.text == "Echo: Alice: hello Azure"
    (request,) = openai_fake.requests_to(
        "POST", r"/openai/deployments/my-gpt-4o-deployment/chat/completions"
    )
    assert request.query["api-version"] == "2024-10-21"
    assert request.headers["api-key"] == openai_fake.api_key


async def test_local_server_without_a_key_recipe(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: object
) -> None:
    """Ollama or vLLM: OPENAI_BASE_URL, a model name, no key."""
    openai_fake.require_auth = False
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/local.db",
        assistant_api="chat",
        OPENAI_MODEL="llama3.2",
    )
    del env["OPENAI_API_KEY"], env["CONTEXT_TOKENS"]
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        question = await bot.mention("hello llama")
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
    assert answer.text == "Echo: Alice: hello llama"
    (request,) = openai_fake.requests_to("POST", CHAT)
    assert request.body["model"] == "llama3.2"
    assert request.headers["Authorization"] == f"Bearer {NO_KEY}"


@chat_only
@sqlite_only
async def test_litellm_proxy_recipe(make_bot: BotFactory) -> None:
    """A gateway: OPENAI_BASE_URL, its key, a provider-prefixed model name."""
    async with make_bot(OPENAI_MODEL="anthropic/claude-sonnet-4") as bot:
        question = await bot.mention("hello gateway")
        (answer,) = await bot.wait_for_answers("C0001", question.ts)
        assert answer.text == "Echo: Alice: hello gateway"
        (request,) = bot.openai.requests_to("POST", CHAT)
        assert request.body["model"] == "anthropic/claude-sonnet-4"


@sqlite_only
@pytest.mark.parametrize(("before", "after"), [("responses", "chat"), ("chat", "threads")])
async def test_a_thread_continues_across_a_switch_to_or_from_chat(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str, before: str, after: str
) -> None:
    seen: list[list[str]] = []

    def reply(texts: list[str]) -> str:
        seen.append(list(texts))
        return f"answer {len(seen)}"

    openai_fake.reply = reply
    env = bot_env(slack=slack, openai=openai_fake, database_url=database_url, assistant_api=before)
    env.setdefault("OPENAI_ASSISTANT_ID", "asst_test")
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        question = await bot.mention("the secret word is pineapple")
        await bot.wait_for_answers("C0001", question.ts)
    async with BotUnderTest.running(
        {**env, "ASSISTANT_API": after}, slack=slack, openai=openai_fake
    ) as bot:
        await bot.reply("what was the secret word?", thread_ts=question.ts)
        answers = await bot.wait_for_answers("C0001", question.ts, count=2)
    assert [a.text for a in answers] == ["answer 1", "answer 2"]
    shown = "\n".join(seen[-1])
    assert "the secret word is pineapple" in shown and "Assistant: answer 1" in shown
