"""Files people attach: images reach the model, text files are quoted, the rest is named."""

from __future__ import annotations

import base64
from typing import Any

import pytest

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
    return [part for part in content if part["type"] in {"input_image", "image_file", "image_url"}]


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
