"""Specification of bot.text.split: long messages split into chunks Slack accepts."""

from __future__ import annotations

import random
import re

import pytest

from bot.text.markdown import markdown_to_mrkdwn
from bot.text.split import split_message

# ---------------------------------------------------------------------------
# split_message
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "chunks"),
    [
        pytest.param("", 100, [], id="empty"),
        pytest.param(" \n\n\t ", 100, [], id="whitespace only"),
        pytest.param("short", 100, ["short"], id="fits"),
        pytest.param("\n\nshort \n\n", 100, ["short"], id="outer blank lines trimmed"),
        pytest.param("x" * 20, 20, ["x" * 20], id="exactly the limit"),
        pytest.param(
            "first paragraph here\n\nsecond paragraph here",
            30,
            ["first paragraph here", "second paragraph here"],
            id="at paragraph break",
        ),
        pytest.param(
            "line one is here\nline two is here\n\nparagraph",
            36,
            ["line one is here\nline two is here", "paragraph"],
            id="paragraph break preferred over line break",
        ),
        pytest.param(
            "line one is here\nline two is here",
            24,
            ["line one is here", "line two is here"],
            id="at line break",
        ),
        pytest.param(
            "One sentence here. Another one follows here.",
            30,
            ["One sentence here.", "Another one follows here."],
            id="at sentence end",
        ),
        pytest.param(
            "many small words that go on and on",
            20,
            ["many small words", "that go on and on"],
            id="at word boundary",
        ),
        pytest.param("x" * 45, 20, ["x" * 20, "x" * 20, "x" * 5], id="overlong word is hard split"),
        pytest.param(
            "tiny\n" + "y" * 30,
            20,
            ["tiny", "y" * 20, "y" * 10],
            id="short break beats hard split",
        ),
        pytest.param(
            "see <https://x.y|a long label> ok",
            24,
            ["see <https://x.y|a long", "label> ok"],
            id="link token longer than a chunk is split at a space",
        ),
        pytest.param(
            "a <https://x.y|two words> b c",
            28,
            ["a <https://x.y|two words> b", "c"],
            id="no split inside link token",
        ),
        pytest.param(
            "  indented line\n  second indented",
            20,
            ["  indented line", "  second indented"],
            id="indentation kept",
        ),
    ],
)
def test_split_message(text: str, limit: int, chunks: list[str]) -> None:
    assert split_message(text, limit=limit) == chunks


def test_split_message_reopens_code_blocks() -> None:
    code = "\n".join(f"line {number}" for number in range(6))
    text = f"Intro.\n\n```\n{code}\n```\n\nOutro."
    assert split_message(text, limit=32) == [
        "Intro.\n\n```\nline 0\nline 1\n```",
        "```\nline 2\nline 3\nline 4\n```",
        "```\nline 5\n```\n\nOutro.",
    ]


def test_split_message_does_not_leave_an_empty_code_block() -> None:
    text = "Some text before the code.\n```\nprint(1)\n```"
    assert split_message(text, limit=30) == ["Some text before the code.", "```\nprint(1)\n```"]


def test_split_message_drops_the_language_tag_only_when_reopening() -> None:
    text = "```python\n" + "x = 1\n" * 6 + "```"
    chunks = split_message(text, limit=30)
    assert chunks[0].startswith("```python\n")
    assert all(chunk.startswith("```\n") for chunk in chunks[1:])


def test_split_message_at_default_slack_limit() -> None:
    text = "\n\n".join(f"Paragraph {number}. " + "word " * 150 for number in range(20))
    chunks = split_message(text)
    assert len(chunks) > 1
    assert all(len(chunk) <= 3900 for chunk in chunks)
    assert all(chunk.startswith("Paragraph") for chunk in chunks)


def test_split_message_rejects_tiny_limits() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_message("text", limit=5)


def _random_message(rng: random.Random) -> str:
    """A message mixing paragraphs, lists, links, code blocks and overlong words."""
    words = ["alpha", "beta", "gamma", "*bold*", "_it_", "<https://x.y|a link>", "word."]
    blocks = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.choice(["paragraph", "list", "code", "long"])
        if kind == "paragraph":
            blocks.append(" ".join(rng.choices(words, k=rng.randint(1, 60))))
        elif kind == "list":
            blocks.append("\n".join("• " + " ".join(rng.choices(words, k=5)) for _ in range(4)))
        elif kind == "code":
            lines = ["    " * rng.randint(0, 2) + f"code_{n} = {n}" for n in range(12)]
            blocks.append("```\n" + "\n".join(lines) + "\n```")
        else:
            blocks.append("z" * rng.randint(1, 300))
    return "\n\n".join(blocks)


def _content(text: str) -> str:
    """Non-whitespace content, ignoring code fences that splitting may add."""
    return re.sub(r"\s+", "", text.replace("```", ""))


def _fence_balance_ok(chunk: str) -> bool:
    return chunk.count("```") % 2 == 0


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("limit", [16, 40, 120, 500])
def test_split_message_properties(seed: int, limit: int) -> None:
    text = _random_message(random.Random(seed))
    chunks = split_message(text, limit=limit)
    assert chunks, "a non-empty message yields chunks"
    assert all(len(chunk) <= limit for chunk in chunks)
    assert all(chunk.strip() for chunk in chunks)
    assert all(_fence_balance_ok(chunk) for chunk in chunks)
    assert _content("\n".join(chunks)) == _content(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("`" * 40, id="backtick run"),
        pytest.param("a" + "`" * 25 + " b", id="backtick run after a letter"),
        pytest.param("```\n" + "`" * 30 + "\n```", id="backticks inside code"),
        pytest.param("x ```" + "y" * 40 + "``` z", id="inline triple backticks"),
        pytest.param("```python\n```", id="empty code block"),
        pytest.param("<" * 30 + ">" * 30, id="angle brackets"),
        pytest.param(" " * 40 + "x", id="leading spaces"),
    ],
)
def test_split_message_terminates_on_pathological_input(text: str) -> None:
    chunks = split_message(text, limit=16)
    assert all(0 < len(chunk) <= 16 and chunk.strip() for chunk in chunks)
    assert re.sub(r"[\s`]", "", "".join(chunks)) == re.sub(r"[\s`]", "", text)


def _random_markdown(rng: random.Random) -> str:
    pieces = [
        "## Heading **bold**",
        "Some *text* with `code_x` and [a link](https://x.y/a_b).",
        "- item one\n  - nested _item_",
        "1. first\n2. second",
        "```python\nprint('a < b')\nfor i in range(3):\n    pass\n```",
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "> quote & more",
        "---",
    ]
    return "\n\n".join(rng.choices(pieces, k=rng.randint(1, 25)))


@pytest.mark.parametrize("seed", range(20))
def test_converted_markdown_splits_into_well_formed_chunks(seed: int) -> None:
    mrkdwn = markdown_to_mrkdwn(_random_markdown(random.Random(seed)))
    chunks = split_message(mrkdwn, limit=80)
    assert all(len(chunk) <= 80 and _fence_balance_ok(chunk) for chunk in chunks)
    assert _content("\n".join(chunks)) == _content(mrkdwn)
