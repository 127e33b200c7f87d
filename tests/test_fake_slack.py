"""The Slack fake, driven by the real slack_sdk / slack_bolt clients."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.events import (
    channel_message,
    dm_message,
    event_envelope,
    mention,
    post_event,
    signed_headers,
)
from tests.fakes.slack import FakeSlack, SocketAckTimeout

SIGNING_SECRET = "test-signing-secret"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as slack:
        yield slack


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)


async def test_auth_test(fake: FakeSlack, client: AsyncWebClient) -> None:
    response = await client.auth_test()
    assert response["user_id"] == "UBOT"
    assert response["bot_id"] == "BBOT"
    assert response["team_id"] == "T0001"
    assert response["user"] == "bot"
    assert fake.calls_to("auth.test")[0].token == "xoxb-test"


async def test_post_update_and_thread(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_user("UALICE", display_name="Alice")
    parent = fake.add_message("C0001", user="UALICE", text="<@UBOT> what is 2+2?")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "thinking"}}]
    metadata = {"event_type": "bot_reply", "event_payload": {"request": parent.ts}}

    posted = await client.chat_postMessage(
        channel="C0001", thread_ts=parent.ts, text="thinking…", blocks=blocks, metadata=metadata
    )
    assert posted["channel"] == "C0001"
    assert posted["message"]["bot_id"] == "BBOT"
    assert posted["message"]["thread_ts"] == parent.ts
    call = fake.calls_to("chat.postMessage")[0]
    assert call.args["blocks"] == blocks
    assert call.args["metadata"] == metadata

    await client.chat_update(channel="C0001", ts=posted["ts"], text="4", blocks=[])
    (reply,) = fake.bot_replies("C0001", parent.ts)
    assert (reply.text, reply.edited, reply.user, reply.blocks) == ("4", 1, "UBOT", [])
    assert reply.metadata == metadata
    assert [m.ts for m in fake.thread("C0001", parent.ts)] == [parent.ts, reply.ts]
    assert fake.render_thread("C0001", parent.ts) == "Alice: <@UBOT> what is 2+2?\nbot: 4"

    # replies to a reply land in the parent's thread, as in Slack
    again = await client.chat_postMessage(channel="C0001", thread_ts=reply.ts, text="again")
    assert again["message"]["thread_ts"] == parent.ts

    await client.chat_delete(channel="C0001", ts=again["ts"])
    assert len(fake.bot_replies("C0001", parent.ts)) == 1
    assert float(posted["ts"]) > float(parent.ts)


async def test_form_and_json_bodies_with_token_in_body(fake: FakeSlack) -> None:
    blocks = [{"type": "divider"}]
    async with aiohttp.ClientSession() as session:
        form = {
            "token": "xoxb-test",
            "channel": "C0001",
            "text": "hi",
            "blocks": json.dumps(blocks),
        }
        async with session.post(f"{fake.api_url}chat.postMessage", data=form) as response:
            assert response.status == 200
            assert (await response.json())["ok"] is True
        body: dict[str, Any] = {"token": "xoxb-nope", "channel": "C0001", "text": "hi"}
        async with session.post(f"{fake.api_url}chat.postMessage", json=body) as response:
            assert await response.json() == {"ok": False, "error": "invalid_auth"}
        async with session.post(f"{fake.api_url}chat.postMessage", data={"text": "x"}) as response:
            assert await response.json() == {"ok": False, "error": "not_authed"}
    first = fake.calls[0]
    assert first.args == {"channel": "C0001", "text": "hi", "blocks": blocks}
    assert first.token == "xoxb-test"
    assert [c.error for c in fake.calls] == [None, "invalid_auth", "not_authed"]


async def test_replies_pagination(fake: FakeSlack, client: AsyncWebClient) -> None:
    parent = fake.add_message("C0001", user="UALICE", text="parent")
    replies = [
        fake.add_message("C0001", user="UALICE", text=f"reply {i}", thread_ts=parent.ts)
        for i in range(4)
    ]
    fake.add_message("C0001", user="UALICE", text="unrelated")

    seen: list[str] = []
    async for page in await client.conversations_replies(channel="C0001", ts=parent.ts, limit=2):
        seen.extend(m["ts"] for m in page["messages"])
    assert seen == [parent.ts] + [r.ts for r in replies]
    assert len(fake.calls_to("conversations.replies")) == 3

    first = (await client.conversations_replies(channel="C0001", ts=parent.ts))["messages"]
    assert first[0]["reply_count"] == 4 and first[0]["thread_ts"] == parent.ts
    assert all(m["user"] == "UALICE" and m["thread_ts"] == parent.ts for m in first)

    with pytest.raises(SlackApiError) as excinfo:
        await client.conversations_replies(channel="C0001", ts="1600000000.000000")
    assert excinfo.value.response["error"] == "thread_not_found"


async def test_replies_repeat_parent_and_history() -> None:
    async with FakeSlack(replies_repeat_parent=True) as fake:
        paging = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        parent = fake.add_message("C0001", user="UALICE", text="parent")
        for i in range(3):
            fake.add_message("C0001", user="UALICE", text=f"r{i}", thread_ts=parent.ts)
        pages = [
            [m["text"] for m in page["messages"]]
            async for page in await paging.conversations_replies(
                channel="C0001", ts=parent.ts, limit=2
            )
        ]
        assert pages == [["parent", "r0"], ["parent", "r1", "r2"]]

        for i in range(3):
            fake.add_message("C0001", user="UALICE", text=f"top {i}")
        history = [
            [m["text"] for m in page["messages"]]
            async for page in await paging.conversations_history(channel="C0001", limit=2)
        ]
        assert history == [["top 2", "top 1"], ["top 0", "parent"]]


async def test_users_and_conversations_info(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_user("UALICE", display_name="Alice", real_name="Alice Liddell")
    user = (await client.users_info(user="UALICE"))["user"]
    assert user["id"] == "UALICE" and user["is_bot"] is False
    assert user["profile"] == {
        "display_name": "Alice",
        "display_name_normalized": "Alice",
        "real_name": "Alice Liddell",
        "real_name_normalized": "Alice Liddell",
        "team": "T0001",
    }
    with pytest.raises(SlackApiError) as excinfo:
        await client.users_info(user="UNOBODY")
    assert excinfo.value.response["error"] == "user_not_found"

    assert (await client.conversations_info(channel="D0001"))["channel"]["is_im"] is True
    with pytest.raises(SlackApiError) as excinfo:
        await client.conversations_info(channel="C9999")
    assert excinfo.value.response["error"] == "channel_not_found"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channel": "C9999", "text": "x"}, "channel_not_found"),
        ({"channel": "C0001", "text": "x" * 40_001}, "msg_too_long"),
        ({"channel": "C0001", "text": ""}, "no_text"),
        ({"channel": "C0001", "text": "a", "markdown_text": "b"}, "markdown_text_conflict"),
        ({"channel": "C0001", "blocks": [{"text": "no type"}]}, "invalid_blocks"),
    ],
)
async def test_post_message_errors(
    client: AsyncWebClient, kwargs: dict[str, Any], error: str
) -> None:
    # api_call: chat_postMessage() itself warns (an error here) when text is missing.
    with pytest.raises(SlackApiError) as excinfo:
        await client.api_call("chat.postMessage", json=kwargs)
    assert excinfo.value.response.status_code == 200
    assert excinfo.value.response["error"] == error


async def test_auth_and_method_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    bad = AsyncWebClient(token="xoxb-wrong", base_url=fake.api_url)
    with pytest.raises(SlackApiError) as excinfo:
        await bad.chat_postMessage(channel="C0001", text="hi")
    assert excinfo.value.response["error"] == "invalid_auth"
    assert fake.bot_messages() == []

    with pytest.raises(SlackApiError) as excinfo:
        await client.chat_update(channel="C0001", ts="1700000000.999999", text="x")
    assert excinfo.value.response["error"] == "message_not_found"

    human = fake.add_message("C0001", user="UALICE", text="mine")
    with pytest.raises(SlackApiError) as excinfo:
        await client.chat_update(channel="C0001", ts=human.ts, text="x")
    assert excinfo.value.response["error"] == "cant_update_message"

    with pytest.raises(SlackApiError) as excinfo:
        await client.api_call("chat.teleport")
    assert excinfo.value.response["error"] == "unknown_method"

    with pytest.raises(SlackApiError) as excinfo:
        await client.apps_connections_open(app_token=fake.bot_token)
    assert excinfo.value.response["error"] == "not_allowed_token_type"


async def test_rate_limit_and_retry_handler(
    fake: FakeSlack, client: AsyncWebClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.fail_next("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as excinfo:
        await client.chat_postMessage(channel="C0001", text="hi")
    assert excinfo.value.response.status_code == 429
    assert excinfo.value.response.headers["Retry-After"] == "7"
    assert excinfo.value.response["error"] == "ratelimited"
    assert fake.bot_messages() == []

    # slack_sdk sleeps Retry-After + random(); keep the test fast.
    monkeypatch.setattr(random, "random", lambda: 0.0)
    retrying = AsyncWebClient(
        token=fake.bot_token,
        base_url=fake.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    fake.fail_next("chat.postMessage", retry_after=0, times=2)
    response = await retrying.chat_postMessage(channel="C0001", text="hi")
    assert response["ok"] is True
    statuses = [c.status for c in fake.calls_to("chat.postMessage")]
    assert statuses == [429, 429, 429, 200]
    assert [m.text for m in fake.bot_messages()] == ["hi"]


async def test_injected_server_and_api_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("*", status=503)
    fake.fail_next("reactions.add", status=200, error="fatal_error")
    with pytest.raises(SlackApiError) as excinfo:
        await client.auth_test()
    assert excinfo.value.response.status_code == 503
    msg = fake.add_message("C0001", user="UALICE", text="hi")
    with pytest.raises(SlackApiError) as excinfo:
        await client.reactions_add(channel="C0001", timestamp=msg.ts, name="eyes")
    assert excinfo.value.response["error"] == "fatal_error"
    assert msg.reactions == {}
    assert (await client.auth_test())["ok"] is True


async def test_latency(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.latency_s = 0.05
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.auth_test()
    assert loop.time() - started >= 0.05


async def test_reactions(fake: FakeSlack, client: AsyncWebClient) -> None:
    msg = fake.add_message("C0001", user="UALICE", text="hi")
    await client.reactions_add(channel="C0001", timestamp=msg.ts, name="eyes")
    assert msg.reactions == {"eyes": {"UBOT"}}
    for call, error in [(client.reactions_add, "already_reacted")]:
        with pytest.raises(SlackApiError) as excinfo:
            await call(channel="C0001", timestamp=msg.ts, name="eyes")
        assert excinfo.value.response["error"] == error
    await client.reactions_remove(channel="C0001", timestamp=msg.ts, name="eyes")
    assert msg.reactions == {}
    with pytest.raises(SlackApiError) as excinfo:
        await client.reactions_remove(channel="C0001", timestamp=msg.ts, name="eyes")
    assert excinfo.value.response["error"] == "no_reaction"


async def test_assistant_views_and_ephemeral(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.assistant_threads_setStatus(
        channel_id="D0001", thread_ts="1700000000.000100", status="is thinking…"
    )
    await client.assistant_threads_setTitle(
        channel_id="D0001", thread_ts="1700000000.000100", title="Maths"
    )
    await client.assistant_threads_setSuggestedPrompts(
        channel_id="D0001", prompts=[{"title": "Hi", "message": "Hello"}]
    )
    await client.views_publish(user_id="UALICE", view={"type": "home", "blocks": []})
    await client.chat_postEphemeral(channel="C0001", user="UALICE", text="psst")
    assert fake.calls_to("assistant.threads.setStatus")[0].args["status"] == "is thinking…"
    assert fake.calls_to("assistant.threads.setSuggestedPrompts")[0].args["prompts"] == [
        {"title": "Hi", "message": "Hello"}
    ]
    assert fake.home_views["UALICE"]["type"] == "home"
    assert fake.ephemerals[0].text == "psst"
    assert fake.bot_messages() == []


async def test_chat_stream_helper(fake: FakeSlack, client: AsyncWebClient) -> None:
    parent = fake.add_message("C0001", user="UALICE", text="<@UBOT> tell me a story")
    streamer = await client.chat_stream(
        channel="C0001",
        thread_ts=parent.ts,
        recipient_team_id="T0001",
        recipient_user_id="UALICE",
        buffer_size=10,
    )
    pieces = ["Once upon ", "a time ", "there was ", "a bot."]
    for piece in pieces:
        await streamer.append(markdown_text=piece)
        if streamer.ts is not None:
            assert fake.message("C0001", streamer.ts) is not None
    stream_ts = streamer.ts
    assert stream_ts is not None
    assert fake.message("C0001", stream_ts).streaming is True  # type: ignore[union-attr]
    await streamer.stop(markdown_text=" The end.")

    (reply,) = fake.bot_replies("C0001", parent.ts)
    assert reply.ts == stream_ts
    assert reply.text == reply.markdown_text == "".join(pieces) + " The end."
    assert reply.streaming is False
    assert len(fake.calls_to("chat.startStream")) == 1
    assert len(fake.calls_to("chat.stopStream")) == 1

    with pytest.raises(SlackApiError) as excinfo:
        await client.chat_appendStream(channel="C0001", ts=stream_ts, markdown_text="more")
    assert excinfo.value.response["error"] == "message_not_in_streaming_state"


async def test_stream_methods_directly(fake: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        await client.chat_startStream(channel="C0001", thread_ts="1700000000.000100")
    assert excinfo.value.response["error"] == "invalid_arguments"

    started = await client.chat_startStream(
        channel="D0001", thread_ts="1700000000.000100", markdown_text="Hel"
    )
    await client.chat_appendStream(channel="D0001", ts=started["ts"], markdown_text="lo")
    await client.chat_stopStream(
        channel="D0001", ts=started["ts"], markdown_text="!", blocks=[{"type": "divider"}]
    )
    msg = fake.message("D0001", started["ts"])
    assert msg is not None
    assert (msg.text, msg.blocks, msg.thread_ts) == (
        "Hello!",
        [{"type": "divider"}],
        "1700000000.000100",
    )


async def test_file_upload_v2(fake: FakeSlack, client: AsyncWebClient) -> None:
    parent = fake.add_message("C0001", user="UALICE", text="send me a file")
    result = await client.files_upload_v2(
        channel="C0001",
        thread_ts=parent.ts,
        content="hello file",
        filename="notes.txt",
        title="Notes",
        initial_comment="here you go",
    )
    file_id = result["file"]["id"]
    assert fake.files[file_id].content == b"hello file"
    assert (await client.files_info(file=file_id))["file"]["title"] == "Notes"
    (reply,) = fake.bot_replies("C0001", parent.ts)
    assert (reply.text, reply.files) == ("here you go", [file_id])


async def test_socket_mode_round_trip_with_bolt(fake: FakeSlack) -> None:
    app = AsyncApp(
        token=fake.bot_token,
        client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url),
    )
    received: list[dict[str, Any]] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        received.append(event)
        await say(text="hello!", thread_ts=event["ts"])

    handler = AsyncSocketModeHandler(app, app_token=fake.app_token)
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]
        await fake.wait_for(lambda: fake.socket_connections == 1, timeout=2)

        ts = fake.new_ts()
        body = event_envelope(mention(text="<@UBOT> hi", user="UALICE", ts=ts))
        ack = await fake.send_socket_event(body)
        assert ack == {"envelope_id": fake.socket_envelopes[-1]["envelope_id"]}

        await fake.wait_for(lambda: len(fake.bot_replies("C0001", ts)) == 1, timeout=2)
        assert received[0]["text"] == "<@UBOT> hi"
        assert fake.render_thread("C0001", ts) == "UALICE: <@UBOT> hi\nbot: hello!"
        assert fake.calls_to("apps.connections.open")[0].token == fake.app_token

        # Slack asks the client to reconnect; the SDK opens a fresh connection by itself.
        await fake.disconnect_sockets()
        await fake.wait_for(lambda: len(fake.calls_to("apps.connections.open")) == 2, timeout=2)
        await fake.wait_for(lambda: fake.socket_connections == 1, timeout=2)
        second = fake.new_ts()
        await fake.send_socket_event(
            event_envelope(mention(text="<@UBOT> again", user="U2", ts=second))
        )
        await fake.wait_for(lambda: len(fake.bot_replies("C0001", second)) == 1, timeout=2)
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
    await fake.wait_for(lambda: fake.socket_connections == 0, timeout=2)


async def test_socket_mode_protocol(fake: FakeSlack, client: AsyncWebClient) -> None:
    app_client = AsyncWebClient(token=fake.app_token, base_url=fake.api_url)
    url = (await app_client.apps_connections_open(app_token=fake.app_token))["url"]
    assert url.startswith(f"ws://127.0.0.1:{fake.port}/socket-mode?ticket=")
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        hello = await ws.receive_json(timeout=1)
        assert hello["type"] == "hello"
        assert fake.socket_connections == 1

        # nobody acks: the sender gives up
        with pytest.raises(SocketAckTimeout):
            await fake.send_socket_event({"type": "events_api_test"}, timeout=0.2)
        envelope = await ws.receive_json(timeout=1)
        assert envelope["payload"] == {"type": "events_api_test"}
        assert envelope["accepts_response_payload"] is False

        async def ack_next() -> None:
            sent = await ws.receive_json(timeout=1)
            assert sent["retry_attempt"] == 1 and sent["retry_reason"] == "timeout"
            await ws.send_json({"envelope_id": sent["envelope_id"]})

        acker = asyncio.create_task(ack_next())
        ack = await fake.send_socket_event({"type": "x"}, retry_attempt=1, timeout=1)
        await acker
        assert set(ack) == {"envelope_id"}


async def test_send_socket_event_without_connection(fake: FakeSlack) -> None:
    with pytest.raises(AssertionError, match="no Socket Mode connection"):
        await fake.send_socket_event({"type": "x"}, timeout=0.05)


async def test_wait_for_reports_recent_calls(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.auth_test()
    with pytest.raises(AssertionError, match=r"(?s)never.*auth\.test"):
        await fake.wait_for(lambda: False, timeout=0.03, message="never")


async def test_signed_events_accepted_by_bolt(fake: FakeSlack) -> None:
    app = AsyncApp(
        token=fake.bot_token,
        signing_secret=SIGNING_SECRET,
        client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url),
    )
    seen: list[str] = []

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        seen.append(event["text"])

    runner = aiohttp.web.AppRunner(app.web_app(path="/slack/events"))
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/slack/events"
    try:
        body = event_envelope(dm_message(text="hello", user="UALICE", ts=fake.new_ts()))
        async with aiohttp.ClientSession() as session:
            status, _, seconds = await post_event(session, url, body, signing_secret=SIGNING_SECRET)
            assert status == 200 and seconds >= 0
            bad = await post_event(
                session, url, body, signing_secret=SIGNING_SECRET, signature="v0=bad"
            )
            assert bad[0] == 401
        await fake.wait_for(lambda: seen == ["hello"], timeout=2)
    finally:
        await runner.cleanup()


def test_event_builders() -> None:
    event = channel_message(text="<@UBOT> yo", user="UALICE", ts="1700000000.000100")
    assert event["channel_type"] == "channel" and event["channel"] == "C0001"
    assert event["blocks"][0]["elements"][0]["elements"][0] == {"type": "user", "user_id": "UBOT"}
    bot = dm_message(text="hi", user="UBOT", ts="1700000000.000200", bot_id="BBOT")
    assert bot["bot_id"] == "BBOT" and bot["channel_type"] == "im" and "client_msg_id" not in bot

    first, second = event_envelope(event), event_envelope(event)
    assert first["event_id"] != second["event_id"] and first["event_id"].startswith("Ev")
    assert first["authorizations"][0]["user_id"] == "UBOT"
    assert first["type"] == "event_callback"

    body = json.dumps(first).encode()
    headers = signed_headers(body, signing_secret=SIGNING_SECRET, retry_num=1)
    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(body, headers)
    assert headers["X-Slack-Retry-Num"] == "1"
    assert headers["X-Slack-Retry-Reason"] == "http_timeout"
