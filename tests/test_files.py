"""Files people attach: images reach the model, text files are quoted, the rest is named."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot import attachments
from bot.attachments import may_send_token
from bot.slack import files as slack_files
from bot.slack.client import make_web_client
from tests.conftest import ON_ONE_BACKEND
from tests.fakes.events import mention
from tests.harness import BotUnderTest

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def ask_with_files(bot: BotUnderTest, text: str, files: list[dict[str, Any]]) -> str:
    full = f"<@UBOT> {text}"
    message = bot.slack.add_message("C0001", user="UALICE", text=full)
    await bot.deliver({**mention(text=full, user="UALICE", ts=message.ts), "files": files})
    return message.ts


def image_parts(bot: BotUnderTest) -> list[dict[str, Any]]:
    """The image parts of what the bot sent to the model, for either API."""
    if bot.assistant_api == "chat":
        (create,) = bot.openai.requests_to("POST", r"/v1/chat/completions")
        content = create.body["messages"][-1]["content"]
    elif bot.assistant_api == "responses":
        (create,) = bot.openai.requests_to("POST", r"/v1/responses")
        content = create.body["input"][0]["content"]
    else:
        (create,) = bot.openai.requests_to("POST", r"/v1/threads/[^/]+/runs")
        content = create.body["additional_messages"][0]["content"]
    if isinstance(content, str):
        return []
    return [part for part in content if part["type"] in {"input_image", "image_file", "image_url"}]


@pytest.mark.both_slack_modes
async def test_attached_image_reaches_the_model(bot: BotUnderTest) -> None:
    image = bot.slack.add_user_file("chart.png", mimetype="image/png", content=PNG)
    ts = await ask_with_files(bot, "what does this chart show?", [image])
    answers = await bot.wait_for_answers("C0001", ts)
    assert answers[0].text == "Echo: Alice: what does this chart show?"
    (part,) = image_parts(bot)
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    if bot.assistant_api == "chat":
        assert part == {"type": "image_url", "image_url": {"url": data_url}}
    elif bot.assistant_api == "responses":
        assert part["image_url"] == data_url
    else:
        uploaded = bot.openai.files[part["image_file"]["file_id"]]
        assert uploaded["bytes"] == PNG and uploaded["purpose"] == "vision"


async def test_text_file_is_quoted_for_the_model(bot: BotUnderTest) -> None:
    seen: list[str] = []
    bot.openai.reply = lambda texts: seen.append(texts[-1]) or "read it"
    notes = bot.slack.add_user_file(
        "notes.txt", mimetype="text/plain", content=b"deadline is Friday"
    )
    ts = await ask_with_files(bot, "summarise the file", [notes])
    await bot.wait_for_answers("C0001", ts)
    assert "Attached file notes.txt:" in seen[0] and "deadline is Friday" in seen[0]


@ON_ONE_BACKEND
async def test_unsupported_and_oversized_files_are_named_to_the_user(bot: BotUnderTest) -> None:
    sheet = bot.slack.add_user_file(
        "budget.xlsx", mimetype="application/vnd.ms-excel", content=b"x"
    )
    huge = {
        **bot.slack.add_user_file("huge.png", mimetype="image/png", content=PNG),
        "size": 50 * 1024 * 1024,
    }
    ts = await ask_with_files(bot, "check these", [sheet, huge])
    answers = await bot.wait_for_answers("C0001", ts, count=2)
    assert sorted(a.text for a in answers) == [
        "Echo: Alice: check these",
        "I couldn't read budget.xlsx (this kind of file isn't supported); "
        "huge.png (larger than 10 MB). I'll answer from the rest.",
    ]
    assert bot.slack.downloads == [], "nothing is downloaded that cannot be used"


async def test_citations_become_footnotes_not_raw_markers(bot: BotUnderTest) -> None:
    if bot.assistant_api == "chat":
        pytest.skip("the chat backend uses no hosted search tools, so no citations come back")
    if bot.assistant_api == "threads":
        bot.openai.reply = lambda texts: "Revenue grew 12%【4:0†q3-report.pdf】 last quarter."
        expected_source = "1. q3-report.pdf"
    else:
        bot.openai.reply = lambda texts: (
            "Revenue grew 12% ([Q3 report](https://ir.example.com/q3))."
        )
        expected_source = "1. <https://ir.example.com/q3|Q3 report>"
    question = await bot.mention("how did revenue do?")
    (answer,) = await bot.wait_for_answers("C0001", question.ts)
    assert "【" not in answer.text and "†" not in answer.text
    assert "*Sources*" in answer.text and expected_source in answer.text
    if bot.assistant_api == "threads":
        assert "Revenue grew 12% [1] last quarter." in answer.text


async def test_images_the_assistant_makes_are_uploaded_into_the_thread(bot: BotUnderTest) -> None:
    if bot.assistant_api == "chat":
        pytest.skip("Chat Completions answers in text only; it makes no images")
    bot.openai.image_output = PNG
    question = await bot.mention("draw me a chart")
    await bot.wait_for_answers("C0001", question.ts)
    (uploaded,) = [f for f in bot.slack.files.values() if f.completed]
    assert uploaded.content == PNG
    assert uploaded.channel == "C0001" and uploaded.thread_ts == question.ts


async def test_answers_without_images_cost_no_extra_calls(bot: BotUnderTest) -> None:
    question = await bot.mention("just text")
    await bot.wait_for_answers("C0001", question.ts)
    assert bot.slack.calls_to("files.getUploadURLExternal") == []
    assert bot.openai.requests_to("GET", r"/v1/files/[^/]+/content") == []


def received_images(bot: BotUnderTest) -> list[bytes]:
    """The image bytes the model got, decoded from whichever form the API carries them in."""
    images = []
    for part in image_parts(bot):
        if bot.assistant_api == "responses":
            images.append(base64.b64decode(part["image_url"].split(",", 1)[1]))
        elif bot.assistant_api == "chat":
            images.append(base64.b64decode(part["image_url"]["url"].split(",", 1)[1]))
        else:
            images.append(bot.openai.files[part["image_file"]["file_id"]]["bytes"])
    return images


def big_png(size: int) -> bytes:
    """A PNG-signed payload of `size` bytes that no prefix of it equals."""
    return PNG[:8] + random.Random(size).randbytes(size - 8)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_file_sent_slowly_in_small_pieces_reaches_the_model_whole(
    bot: BotUnderTest,
) -> None:
    """Over a real network a body arrives in pieces; a read that takes only what is buffered
    sends the model a truncated image (which OpenAI rejects) or a cut text file."""
    bot.slack.download_chunk_bytes = 16 * 1024
    bot.slack.download_pause_s = 0.002
    image = big_png(2 * 1024 * 1024)
    # 60 KB: many pieces, under the text cap and within the chat backend's context budget
    notes = ("line of the minutes\n" * 3000).encode()
    seen: list[str] = []
    bot.openai.reply = lambda texts: seen.append(texts[-1]) or "read them"
    files = [
        bot.slack.add_user_file("photo.png", mimetype="image/png", content=image),
        bot.slack.add_user_file("minutes.txt", mimetype="text/plain", content=notes),
    ]
    ts = await ask_with_files(bot, "what do these say?", files)
    (answer,) = await bot.wait_for_answers("C0001", ts)
    assert answer.text == "read them"
    (received,) = received_images(bot)
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(image).hexdigest()
    assert notes.decode() in seen[0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_a_file_over_its_cap_is_named_as_too_large_and_never_sent_in_part(
    bot: BotUnderTest,
) -> None:
    """Slack's `size` can be missing or wrong; the bytes that arrive decide."""
    bot.slack.download_chunk_bytes = 8 * 1024
    seen: list[str] = []
    bot.openai.reply = lambda texts: seen.append(texts[-1]) or "ok"
    log_file = {
        **bot.slack.add_user_file(
            "server.log", mimetype="text/plain", content=b"GET /index 200\n" * 20_000
        ),
        "size": 0,
    }
    ts = await ask_with_files(bot, "anything odd in the log?", [log_file])
    answers = await bot.wait_for_answers("C0001", ts, count=2)
    assert sorted(a.text for a in answers) == [
        "I couldn't read server.log (larger than 200 KB). I'll answer from the rest.",
        "ok",
    ]
    assert "GET /index" not in seen[0]


@pytest.mark.parametrize(
    ("url", "api_url", "allowed"),
    [
        ("https://files.slack.com/files-pri/T1-F1/a.png", "https://slack.com/api/", True),
        ("https://files.slack.com/files-pri/T1-F1/a.png", "http://127.0.0.1:9/api/", True),
        ("https://acme.slack.com/files/U1/F1/a.png", "https://slack.com/api/", True),
        ("https://files.slack-gov.com/files-pri/T1-F1/a.png", "https://slack.com/api/", True),
        ("https://FILES.SLACK.COM./files-pri/a.png", "https://slack.com/api/", True),
        ("https://files.slack.com:443/a.png", "https://slack.com/api/", True),
        ("http://files.slack.com/a.png", "https://slack.com/api/", False),
        ("https://files.slack.com:8443/a.png", "https://slack.com/api/", False),
        ("https://files.slack.com.evil.example/a.png", "https://slack.com/api/", False),
        ("https://evilslack.com/a.png", "https://slack.com/api/", False),
        ("https://files.slack.com@evil.example/a.png", "https://slack.com/api/", False),
        ("https://user@files.slack.com/a.png", "https://slack.com/api/", False),
        ("https://evil.example/?u=https://files.slack.com/", "https://slack.com/api/", False),
        ("https://a.slack-edge.com/a.png", "https://slack.com/api/", False),
        ("https://docs.google.com/document/d/1", "https://slack.com/api/", False),
        ("http://127.0.0.1:9/files/F1/a.png", "http://127.0.0.1:9/api/", True),
        ("http://127.0.0.1:10/files/F1/a.png", "http://127.0.0.1:9/api/", False),
        ("https://127.0.0.1:9/files/F1/a.png", "http://127.0.0.1:9/api/", False),
        ("http://localhost:9/files/F1/a.png", "http://127.0.0.1:9/api/", False),
        ("https://proxy.internal/files/a", "https://proxy.internal:443/api/", True),
        ("https://files.slack.com:99999/a.png", "https://slack.com/api/", False),
        ("", "https://slack.com/api/", False),
        ("files.slack.com/a.png", "https://slack.com/api/", False),
    ],
)
def test_may_send_token(url: str, api_url: str, allowed: bool) -> None:
    assert may_send_token(url, slack_api_url=api_url) is allowed


@contextlib.asynccontextmanager
async def file_host(
    redirect_to: str | None = None,
) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """Another web server on this machine (another port: another host to the bot), serving
    any path as a PNG (or redirecting to `redirect_to`) and keeping every request's headers."""
    requests: list[dict[str, str]] = []

    async def serve(request: web.Request) -> web.Response:
        requests.append(dict(request.headers))
        if redirect_to is not None:
            raise web.HTTPFound(redirect_to)
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{path:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}", requests
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_bot_token_never_goes_to_a_host_outside_slack(bot: BotUnderTest) -> None:
    async with file_host() as (host, requests):
        remote = {
            **bot.slack.add_user_file("chart.png", mimetype="image/png", content=PNG),
            "url_private": f"http://{host}/files-pri/T1-F1/chart.png",
            "url_private_download": f"http://{host}/files-pri/T1-F1/download/chart.png",
        }
        ts = await ask_with_files(bot, "what does this chart show?", [remote])
        answers = await bot.wait_for_answers("C0001", ts, count=2)
    assert not [r for r in requests if "Authorization" in r], "the token left Slack"
    assert sorted(a.text for a in answers) == [
        "Echo: Alice: what does this chart show?",
        f"I couldn't read chart.png (it is stored at {host}, not on Slack, so I didn't "
        "fetch it). I'll answer from the rest.",
    ]
    assert image_parts(bot) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_a_turn_holds_a_bounded_number_of_file_bytes(
    bot: BotUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files past the turn's budget are named; those within it reach the model whole. The
    third file's `size` is missing, so only its bytes show that it does not fit."""
    monkeypatch.setattr(slack_files, "MAX_TURN_FILE_BYTES", 1024 * 1024)
    monkeypatch.setattr(attachments, "MAX_TURN_FILE_BYTES", 1024 * 1024)
    images = [big_png(400 * 1024 + n) for n in range(4)]
    files = [
        bot.slack.add_user_file(f"p{n}.png", mimetype="image/png", content=image)
        for n, image in enumerate(images)
    ]
    files[2] = {**files[2], "size": 0}
    ts = await ask_with_files(bot, "compare them", files)
    answers = await bot.wait_for_answers("C0001", ts, count=2)
    assert sorted(a.text for a in answers) == [
        "Echo: Alice: compare them",
        "I couldn't read p2.png (past the 1 MB of files I read per message); "
        "p3.png (past the 1 MB of files I read per message). I'll answer from the rest.",
    ]
    assert received_images(bot) == images[:2]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_a_stalled_download_times_out_and_the_question_is_still_answered(
    bot: BotUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_files, "DOWNLOAD_TIMEOUT_S", 0.3)
    bot.slack.download_chunk_bytes = 64
    bot.slack.download_pause_s = 30.0
    image = bot.slack.add_user_file("chart.png", mimetype="image/png", content=PNG)
    ts = await ask_with_files(bot, "what does this chart show?", [image])
    answers = await bot.wait_for_answers("C0001", ts, count=2)
    assert sorted(a.text for a in answers) == [
        "Echo: Alice: what does this chart show?",
        "I couldn't read chart.png (the download took too long). I'll answer from the rest.",
    ]


async def test_a_redirect_away_from_slack_is_followed_without_the_token() -> None:
    async with (
        file_host() as (elsewhere, elsewhere_requests),
        file_host(redirect_to=f"http://{elsewhere}/cdn/chart.png") as (slack_host, slack_requests),
    ):
        client = make_web_client(token="xoxb-secret", base_url=f"http://{slack_host}/api/")
        url = f"http://{slack_host}/files/F1/chart.png"
        data = await slack_files.download(url, client=client, max_bytes=1024)
    assert data == PNG
    assert slack_requests[0]["Authorization"] == "Bearer xoxb-secret"
    assert len(elsewhere_requests) == 1 and "Authorization" not in elsewhere_requests[0]
