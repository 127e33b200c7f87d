"""The fake OpenAI's Chat Completions, checked through the real SDK as the bot uses it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI

from tests.fakes.openai_api import FakeOpenAI

MESSAGES: list[dict[str, str]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hello"},
]


@pytest.fixture
async def client(openai_fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    openai_fake.run_s = 0.05
    sdk = AsyncOpenAI(api_key=openai_fake.api_key, base_url=openai_fake.base_url, max_retries=0)
    yield sdk
    await sdk.close()


async def test_plain_completion_parses_as_the_sdk_type(
    client: AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    completion = await client.chat.completions.create(model="gpt-x", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.object == "chat.completion" and completion.model == "gpt-x"
    choice = completion.choices[0]
    assert choice.message.content == "Echo: hello" and choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert openai_fake.chat_completions[0].system == "Be brief."


async def test_plain_body_is_sent_chunked(openai_fake: FakeOpenAI) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{openai_fake.base_url}/chat/completions",
            json={"model": "m", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {openai_fake.api_key}"},
        ) as response,
    ):
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert (await response.json())["choices"][0]["message"]["content"] == "Echo: hello"


async def test_stream_sends_role_deltas_finish_and_usage(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-x",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: hello"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])


async def test_incomplete_answer_stops_for_length(
    client: AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script_runs("incomplete")
    completion = await client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Echo:"


async def test_failure_mid_stream_raises_in_the_sdk(
    client: AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script_runs("failed")
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_too_many_characters_is_context_length_exceeded(
    client: AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.context_chars = 10
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert raised.value.code == "context_length_exceeded"


async def test_wrong_key_is_refused_unless_the_server_checks_none(
    openai_fake: FakeOpenAI,
) -> None:
    wrong = AsyncOpenAI(api_key="sk-wrong", base_url=openai_fake.base_url, max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError):
            await wrong.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        openai_fake.require_auth = False
        completion = await wrong.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        assert completion.choices[0].message.content == "Echo: hello"
    finally:
        await wrong.close()


async def test_azure_deployment_route(openai_fake: FakeOpenAI) -> None:
    azure = AsyncAzureOpenAI(
        azure_endpoint=openai_fake.base_url.removesuffix("/v1"),
        api_key=openai_fake.api_key,
        api_version="2024-10-21",
        max_retries=0,
    )
    try:
        completion = await azure.chat.completions.create(model="my-dep", messages=MESSAGES)  # type: ignore[arg-type]
    finally:
        await azure.close()
    assert completion.model == "my-dep"
    (request,) = openai_fake.requests_to("POST", r"/openai/deployments/my-dep/chat/completions")
    assert request.headers["api-key"] == openai_fake.api_key
