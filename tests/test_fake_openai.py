"""The fake OpenAI server, driven by the real ``openai.AsyncOpenAI`` client.

Besides the behaviour, ``test_shapes_validate_against_sdk_types`` checks every kind of
body the fake sends against the SDK's pydantic models in strict validation (the SDK itself
parses leniently, so a missing required field would otherwise go unnoticed).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.beta import AssistantStreamEvent, Thread
from openai.types.beta.threads import Message, Run
from openai.types.conversations import Conversation, ConversationItem, ConversationItemList
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fakes.openai_api import FakeOpenAI

QUEUE_S = 0.01
RUN_S = 0.04


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI(queue_s=QUEUE_S, run_s=RUN_S)
    await server.start()
    yield server
    await server.stop()


def _sdk(fake: FakeOpenAI, *, api_key: str | None = None, max_retries: int = 0) -> AsyncOpenAI:
    # A plain-HTTP client skips loading CA certificates, which costs ~40 ms per client.
    return AsyncOpenAI(
        api_key=api_key or fake.api_key,
        base_url=fake.base_url,
        max_retries=max_retries,
        http_client=openai.DefaultAsyncHttpxClient(verify=False),
    )


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    sdk = _sdk(fake)
    yield sdk
    await sdk.close()


async def _assert_advances(get_status: Callable[[], Awaitable[str | None]]) -> None:
    """Poll until a terminal status; the statuses seen must advance queued → in_progress →
    completed. (Whether a poll lands inside a window depends on the machine's load, so
    the test cannot insist on seeing each status; the stuck/cancel tests and the stream
    snapshots check in_progress deterministically.)"""
    seen: list[str | None] = []
    while not seen or seen[-1] in ("queued", "in_progress"):
        status = await get_status()
        if not seen or seen[-1] != status:
            seen.append(status)
        await asyncio.sleep(0.005)
    assert seen == [s for s in ("queued", "in_progress", "completed") if s in seen]
    assert seen[-1] == "completed"


async def _wait_response(client: AsyncOpenAI, response_id: str) -> Response:
    while True:
        response = await client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress"):
            return response
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- Assistants


async def test_thread_run_lifecycle(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.run_s = 0.15
    thread = await client.beta.threads.create(metadata={"channel": "C1"})
    assert thread.metadata == {"channel": "C1"}
    await client.beta.threads.messages.create(thread.id, role="user", content="hello")

    run = await client.beta.threads.runs.create(thread.id, assistant_id="asst_1")
    assert (run.status, run.thread_id, run.assistant_id) == ("queued", thread.id, "asst_1")
    assert run.started_at is None and run.completed_at is None
    created = fake.requests_to("POST", r"/v1/threads/[^/]+/runs")[0].at

    async def status() -> str:
        return (await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)).status

    await _assert_advances(status)
    run = await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    assert run.started_at is not None
    assert run.completed_at is not None and run.usage is not None and run.expires_at is None

    page = await client.beta.threads.messages.list(thread.id, order="asc")
    texts = [(m.role, m.content[0].text.value) for m in page.data if m.content[0].type == "text"]
    assert texts == [("user", "hello"), ("assistant", "Echo: hello")]
    assert page.data[1].run_id == run.id and page.data[1].assistant_id == "asst_1"
    assert fake.thread_messages(thread.id) == texts
    by_run = await client.beta.threads.messages.list(thread.id, run_id=run.id)
    assert [m.id for m in by_run.data] == [page.data[1].id]

    # completed_at is the moment of the transition, not when it was observed.
    assert fake.completed_at[run.id] - created == pytest.approx(QUEUE_S + 0.15, abs=0.05)


async def test_reply_sees_all_user_texts(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.reply = lambda texts: " | ".join(texts)
    thread = await client.beta.threads.create(
        messages=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "ignored"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
        ]
    )
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id="asst_1",
        additional_messages=[{"role": "user", "content": "three"}],
        poll_interval_ms=10,
    )
    assert run.status == "completed"
    assert fake.thread_messages(thread.id)[-1] == ("assistant", "one | two | three")


async def test_active_run_refuses_messages_and_runs(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script_runs("stuck")  # the run must still be active when the next requests land
    thread = await client.beta.threads.create()
    run = await client.beta.threads.runs.create(
        thread.id, assistant_id="asst_1", additional_messages=[{"role": "user", "content": "a"}]
    )
    with pytest.raises(openai.BadRequestError) as refused:
        await client.beta.threads.messages.create(thread.id, role="user", content="b")
    expected = f"Can't add messages to {thread.id} while a run {run.id} is active."
    assert refused.value.status_code == 400 and expected in str(refused.value)
    assert refused.value.body == {
        "message": expected,
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.BadRequestError, match="already has an active run"):
        await client.beta.threads.runs.create(thread.id, assistant_id="asst_1")

    await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    await fake.wait_for(lambda: fake.threads[thread.id].runs[0].status() == "cancelled")
    await client.beta.threads.messages.create(thread.id, role="user", content="b")
    assert fake.max_concurrent_per_thread == 1


async def test_runs_list_with_metadata(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    thread = await client.beta.threads.create()
    ids = []
    for turn in ("t1", "t2", "t3"):
        run = await client.beta.threads.runs.create_and_poll(
            thread_id=thread.id,
            assistant_id="asst_1",
            additional_messages=[{"role": "user", "content": turn}],
            metadata={"turn_key": turn},
            poll_interval_ms=10,
        )
        ids.append(run.id)

    page = await client.beta.threads.runs.list(thread.id, limit=2)
    assert [r.id for r in page.data] == ids[:0:-1]  # newest first
    assert [(r.metadata or {}).get("turn_key") for r in page.data] == ["t3", "t2"]
    assert page.has_more and page.has_next_page()
    rest = await page.get_next_page()
    assert [r.id for r in rest.data] == ids[:1] and not rest.has_more
    ascending = await client.beta.threads.runs.list(thread.id, order="asc")
    assert [r.id for r in ascending.data] == ids


async def test_cancel_run(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script_runs("stuck")
    thread = await client.beta.threads.create()
    run = await client.beta.threads.runs.create(
        thread.id, assistant_id="asst_1", additional_messages=[{"role": "user", "content": "x"}]
    )
    await asyncio.sleep(QUEUE_S + RUN_S + 0.02)
    run = await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    assert run.status == "in_progress"  # stuck: never finishes on its own

    fake.cancel_s = 0.2  # long enough for the next request to land while cancelling
    run = await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert run.status == "cancelling"
    with pytest.raises(openai.BadRequestError, match="while a run"):
        await client.beta.threads.messages.create(thread.id, role="user", content="y")
    run = await client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=5)
    assert run.status == "cancelled" and run.cancelled_at is not None
    assert fake.thread_messages(thread.id) == [("user", "x")]
    assert run.id not in fake.completed_at
    with pytest.raises(openai.BadRequestError, match="Cannot cancel run with status 'cancelled'"):
        await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)


async def test_scripted_run_outcomes(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script_runs("failed", "expired", "incomplete", "requires_action")
    thread = await client.beta.threads.create()

    async def run_once(text: str) -> Run:
        return await client.beta.threads.runs.create_and_poll(
            thread_id=thread.id,
            assistant_id="asst_1",
            additional_messages=[{"role": "user", "content": text}],
            poll_interval_ms=10,
        )

    failed = await run_once("a")
    assert failed.status == "failed" and failed.failed_at is not None
    assert failed.last_error is not None and failed.last_error.code == "server_error"
    assert failed.last_error.message == "Something went wrong"
    assert (await run_once("b")).status == "expired"
    incomplete = await run_once("c")
    assert incomplete.status == "incomplete"
    assert incomplete.incomplete_details is not None
    assert fake.thread_messages(thread.id)[-1] == ("assistant", "Echo"[: len("Echo: c") // 2])

    waiting = await run_once("d")
    assert waiting.status == "requires_action" and waiting.required_action is not None
    (call,) = waiting.required_action.submit_tool_outputs.tool_calls
    assert call.function.name == "get_weather"
    with pytest.raises(openai.BadRequestError, match="Expected tool outputs"):
        await client.beta.threads.runs.submit_tool_outputs(
            waiting.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "nope", "output": "x"}]
        )
    done = await client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=waiting.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}],
        poll_interval_ms=10,
    )
    assert done.status == "completed"
    assert fake.thread_messages(thread.id)[-1] == ("assistant", "Echo: d")
    assert set(fake.completed_at) == {done.id}


async def test_unknown_ids_are_404(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="No thread found with id 'thread_nope'"):
        await client.beta.threads.retrieve("thread_nope")
    thread = await client.beta.threads.create()
    with pytest.raises(openai.NotFoundError, match="No run found"):
        await client.beta.threads.runs.retrieve("run_nope", thread_id=thread.id)
    with pytest.raises(openai.NotFoundError, match="Response with id 'resp_nope' not found"):
        await client.responses.retrieve("resp_nope")
    with pytest.raises(openai.NotFoundError, match="not found"):
        await client.conversations.retrieve("conv_nope")
    deleted = await client.beta.threads.delete(thread.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        await client.beta.threads.retrieve(thread.id)


# --------------------------------------------------------------------------- HTTP behaviour


async def test_429_with_retry_after_is_retried(fake: FakeOpenAI) -> None:
    fake.fail_http("POST", r"/v1/threads", status=429, times=2, retry_after=0.01)
    sdk = _sdk(fake, max_retries=2)
    try:
        thread = await sdk.beta.threads.create()
    finally:
        await sdk.close()
    assert thread.id in fake.threads and len(fake.threads) == 1
    attempts = fake.requests_to("POST", "/v1/threads")
    assert [r.status for r in attempts] == [429, 429, 200]


async def test_injected_500_is_not_processed(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.fail_http("post", r"/v1/conversations", status=500)
    with pytest.raises(openai.InternalServerError):
        await client.conversations.create()
    assert fake.conversations == {}
    await client.conversations.create()  # the failure was used up
    assert len(fake.conversations) == 1


async def test_wrong_api_key_is_401(fake: FakeOpenAI) -> None:
    sdk = _sdk(fake, api_key="sk-wrong")
    try:
        with pytest.raises(openai.AuthenticationError) as refused:
            await sdk.conversations.create()
    finally:
        await sdk.close()
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    assert refused.value.body == {
        "message": "Incorrect API key provided",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
        "param": None,
    }


async def test_latency_delays_answers(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.latency_s = 0.1
    started = time.monotonic()
    await client.conversations.create()
    assert time.monotonic() - started >= 0.1


async def test_assistants_need_beta_header(fake: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        async with session.post(f"{fake.base_url}/threads", json={}, headers=headers) as answer:
            assert answer.status == 400
            assert "OpenAI-Beta" in (await answer.json())["error"]["message"]
        async with session.get(f"{fake.base_url}/nothing", headers=headers) as answer:
            assert answer.status == 404
            assert (await answer.json())["error"]["message"] == "Invalid URL (GET /v1/nothing)"


# --------------------------------------------------------------------------- Responses


async def test_conversation_background_response(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.reply = lambda texts: " / ".join(texts)
    fake.run_s = 0.15
    conversation = await client.conversations.create(
        metadata={"channel": "C1"},
        items=[{"type": "message", "role": "user", "content": "earlier"}],
    )
    assert conversation.metadata == {"channel": "C1"}

    response = await client.responses.create(
        model="gpt-4o-mini",
        conversation=conversation.id,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "hi"},
                    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "auto"},
                ],
            }
        ],
        background=True,
        store=True,
        metadata={"turn_key": "t1"},
    )
    assert response.status == "queued" and response.output == [] and response.background
    assert response.conversation is not None and response.conversation.id == conversation.id
    assert fake.conversation_items(conversation.id)[:2] == [("user", "earlier"), ("user", "hi")]
    created = fake.requests_to("POST", "/v1/responses")[0].at

    async def status() -> str | None:
        return (await client.responses.retrieve(response.id)).status

    await _assert_advances(status)
    done = await client.responses.retrieve(response.id)
    assert done.status == "completed" and done.output_text == "earlier / hi"
    assert done.metadata == {"turn_key": "t1"} and done.usage is not None
    assert fake.completed_at[response.id] - created == pytest.approx(QUEUE_S + 0.15, abs=0.05)
    fake.run_s = RUN_S

    again = await client.responses.create(
        model="gpt-4o-mini", conversation={"id": conversation.id}, input="more", background=True
    )
    assert (await _wait_response(client, again.id)).output_text == "earlier / hi / more"
    assert fake.conversation_items(conversation.id) == [
        ("user", "earlier"),
        ("user", "hi"),
        ("assistant", "earlier / hi"),
        ("user", "more"),
        ("assistant", "earlier / hi / more"),
    ]

    newest = await client.conversations.items.list(conversation.id, limit=2)
    assert [i.type for i in newest.data] == ["message", "message"]
    assert newest.data[0].id == fake.conversations[conversation.id].items[-1]["id"]
    assert newest.has_more
    everything = [item async for item in client.conversations.items.list(conversation.id)]
    assert len(everything) == 5
    added = await client.conversations.items.create(
        conversation.id, items=[{"role": "assistant", "content": "note"}]
    )
    assert len(added.data) == 1
    assert fake.conversation_items(conversation.id)[-1] == ("assistant", "note")
    assert fake.max_concurrent_per_conversation == 1


async def test_foreground_response_and_chain(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    first = await client.responses.create(model="gpt-4o", input="a")
    assert first.status == "completed" and first.output_text == "Echo: a"
    fake.reply = lambda texts: "+".join(texts)
    second = await client.responses.create(
        model="gpt-4o", input="b", previous_response_id=first.id, instructions="be brief"
    )
    assert second.output_text == "a+b" and second.instructions == "be brief"
    with pytest.raises(openai.BadRequestError, match="background"):
        await client.responses.cancel(second.id)


async def test_cancel_background_response(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script_runs("stuck")
    conversation = await client.conversations.create()
    response = await client.responses.create(
        model="gpt-4o", conversation=conversation.id, input="x", background=True
    )
    await asyncio.sleep(QUEUE_S + RUN_S + 0.02)
    assert (await client.responses.retrieve(response.id)).status == "in_progress"
    cancelled = await client.responses.cancel(response.id)
    assert cancelled.status == "cancelled" and cancelled.output == []
    assert (await client.responses.retrieve(response.id)).status == "cancelled"
    assert fake.conversation_items(conversation.id) == [("user", "x")]


async def test_a_function_call_left_without_output_blocks_the_conversation(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.tool_requests = [("lookup", {"id": "A-17"})]
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    conversation = await client.conversations.create()
    asked = await client.responses.create(
        model="gpt-4o", conversation=conversation.id, input="where?", tools=[tool]
    )
    (call,) = [item for item in asked.output if item.type == "function_call"]
    fake.tool_requests = []
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model="gpt-4o", conversation=conversation.id, input="hi")
    assert refused.value.param == "input" and refused.value.type == "invalid_request_error"
    assert f"No tool output found for function call {call.call_id}." in str(refused.value)
    # The refused request added nothing; an output for the call (here with the next
    # question) unblocks the conversation.
    assert fake.conversation_items(conversation.id) == [("user", "where?")]
    answered = await client.responses.create(
        model="gpt-4o",
        conversation=conversation.id,
        input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": "gone"},
            {"role": "user", "content": "hi"},
        ],
    )
    assert answered.output_text.startswith("Echo: hi")
    assert [role for role, _ in fake.conversation_items(conversation.id)] == [
        "user",
        "user",
        "assistant",
    ]


async def test_scripted_response_outcomes(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script_runs("failed", "incomplete", "requires_action")
    failed = await client.responses.create(model="gpt-4o", input="a")
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "server_error" and failed.output_text == ""
    incomplete = await client.responses.create(model="gpt-4o", input="abcd")
    assert incomplete.status == "incomplete" and incomplete.incomplete_details is not None
    assert incomplete.incomplete_details.reason == "max_output_tokens"
    assert incomplete.output_text == "Echo: abcd"[:5]
    assert (await client.responses.create(model="gpt-4o", input="c")).status == "failed"


async def test_concurrency_is_recorded(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script_runs("stuck", "stuck")  # both surely overlap
    conversation = await client.conversations.create()
    other = await client.conversations.create()
    ids = []
    for conversation_id in (conversation.id, other.id, conversation.id):
        response = await client.responses.create(
            model="gpt-4o", conversation=conversation_id, input="1", background=True
        )
        ids.append(response.id)
    assert fake.max_concurrent_per_conversation == 2 == fake.max_concurrent_per_thread
    for response_id in ids[:2]:
        assert (await client.responses.cancel(response_id)).status == "cancelled"
    assert (await _wait_response(client, ids[2])).status == "completed"


# --------------------------------------------------------------------------- streaming


async def test_run_stream_helper(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    thread = await client.beta.threads.create()
    async with client.beta.threads.runs.stream(
        thread_id=thread.id,
        assistant_id="asst_1",
        additional_messages=[{"role": "user", "content": "stream me please"}],
    ) as stream:
        deltas = [delta async for delta in stream.text_deltas]
        final_run = await stream.get_final_run()
        (message,) = await stream.get_final_messages()
    assert "".join(deltas) == "Echo: stream me please"
    assert len(deltas) == fake.stream_chunks
    assert final_run.status == "completed"
    assert message.status == "completed" and message.run_id == final_run.id
    assert fake.thread_messages(thread.id)[-1] == ("assistant", "Echo: stream me please")


async def test_run_stream_events(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    thread = await client.beta.threads.create()
    stream = await client.beta.threads.runs.create(
        thread.id,
        assistant_id="asst_1",
        stream=True,
        additional_messages=[{"role": "user", "content": "hey"}],
    )
    names = [event.event async for event in stream]
    started = fake.requests_to("POST", r"/v1/threads/[^/]+/runs")[-1].at
    assert time.monotonic() - started >= QUEUE_S + RUN_S  # the events follow the timeline
    assert names == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        *["thread.message.delta"] * fake.stream_chunks,
        "thread.message.completed",
        "thread.run.completed",
    ]


async def test_run_stream_cancelled(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script_runs("stuck")
    thread = await client.beta.threads.create()
    stream = await client.beta.threads.runs.create(
        thread.id,
        assistant_id="asst_1",
        stream=True,
        additional_messages=[{"role": "user", "content": "x"}],
    )
    names = []
    async for event in stream:
        names.append(event.event)
        if event.event == "thread.run.in_progress":
            await client.beta.threads.runs.cancel(event.data.id, thread_id=thread.id)
    assert names[-2:] == ["thread.run.cancelling", "thread.run.cancelled"]


async def test_response_stream_helper(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    conversation = await client.conversations.create()
    async with client.responses.stream(
        model="gpt-4o", input="hello there", conversation=conversation.id
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == "Echo: hello there" == final.output_text
    assert fake.conversation_items(conversation.id)[-1] == ("assistant", "Echo: hello there")


async def test_response_stream_events_and_resume(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    stream = await client.responses.create(model="gpt-4o", input="yo", background=True, stream=True)
    events = [event async for event in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events] == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * fake.stream_chunks,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    response_id = events[0].response.id  # type: ignore[union-attr]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Echo: yo"

    resumed = await client.responses.retrieve(response_id, stream=True, starting_after=5)
    assert [e.sequence_number async for e in resumed] == list(range(6, len(events)))
    async with client.responses.stream(response_id=response_id, starting_after=2) as replay:
        assert [e.sequence_number async for e in replay] == list(range(3, len(events)))
        assert (await replay.get_final_response()).output_text == "Echo: yo"


# --------------------------------------------------------------------------- shapes


async def test_shapes_validate_against_sdk_types(fake: FakeOpenAI) -> None:
    """Every body the fake sends passes the SDK models' (non-lenient) pydantic validation."""
    fake.script_runs("requires_action", "failed")
    headers = {"Authorization": f"Bearer {fake.api_key}", "OpenAI-Beta": "assistants=v2"}
    url = fake.base_url

    async with aiohttp.ClientSession(headers=headers) as http:

        async def call(method: str, path: str, body: Any = None) -> Any:
            async with http.request(method, url + path, json=body) as answer:
                assert answer.status == 200, await answer.text()
                return await answer.json()

        async def sse(method: str, path: str, body: Any = None) -> list[tuple[str, Any]]:
            async with http.request(method, url + path, json=body) as answer:
                assert answer.headers["Content-Type"].startswith("text/event-stream")
                raw = await answer.text()
            events = []
            for block in raw.strip().split("\n\n"):
                fields = dict(line.split(": ", 1) for line in block.splitlines())
                events.append((fields["event"], fields["data"]))
            return events

        thread = Thread.model_validate(await call("POST", "/threads", {"metadata": {"a": "b"}}))
        t = f"/threads/{thread.id}"
        Message.model_validate(
            await call("POST", t + "/messages", {"role": "user", "content": "q"})
        )
        run = Run.model_validate(await call("POST", t + "/runs", {"assistant_id": "asst_1"}))
        await fake.wait_for(lambda: fake.threads[thread.id].runs[0].status() == "requires_action")
        waiting = Run.model_validate(await call("GET", f"{t}/runs/{run.id}"))
        assert waiting.required_action is not None
        await call("POST", f"{t}/runs/{run.id}/cancel")
        await fake.wait_for(lambda: fake.threads[thread.id].active_run(time.monotonic()) is None)
        failed = Run.model_validate(
            await call("POST", t + "/runs", {"assistant_id": "asst_1", "metadata": {"k": "v"}})
        )
        assert failed.metadata == {"k": "v"}
        await fake.wait_for(lambda: fake.threads[thread.id].active_run(time.monotonic()) is None)
        events = await sse("POST", t + "/runs", {"assistant_id": "asst_1", "stream": True})
        assert events[-1] == ("done", "[DONE]")
        stream_event = TypeAdapter(AssistantStreamEvent)
        for name, data in events[:-1]:
            stream_event.validate_python({"event": name, "data": json.loads(data)})
        for run_json in (await call("GET", t + "/runs"))["data"]:
            Run.model_validate(run_json)
        messages = await call("GET", t + "/messages?order=asc&limit=100")
        assert messages["object"] == "list" and messages["first_id"] == messages["data"][0]["id"]
        for message_json in messages["data"]:
            Message.model_validate(message_json)

        conversation = Conversation.model_validate(
            await call("POST", "/conversations", {"items": [{"role": "user", "content": "x"}]})
        )
        c = f"/conversations/{conversation.id}"
        ConversationItemList.model_validate(
            await call("POST", c + "/items", {"items": [{"role": "user", "content": "y"}]})
        )
        body = {"model": "gpt-4o", "conversation": conversation.id, "input": "z"}
        fake.script_runs("failed")
        failed_response = Response.model_validate(await call("POST", "/responses", body))
        assert failed_response.status == "failed"
        queued = Response.model_validate(
            await call("POST", "/responses", {**body, "background": True})
        )
        assert queued.status == "queued"
        response_event = TypeAdapter(ResponseStreamEvent)
        for name, data in await sse("GET", f"/responses/{queued.id}?stream=true"):
            assert response_event.validate_python(json.loads(data)).type == name
        Response.model_validate(await call("GET", f"/responses/{queued.id}"))
        items = ConversationItemList.model_validate(await call("GET", c + "/items"))
        assert len(items.data) == 5  # x, y, z, z, one answer (the failed response has none)
        TypeAdapter(ConversationItem).validate_python(
            await call("GET", f"{c}/items/{items.data[0].id}")
        )
