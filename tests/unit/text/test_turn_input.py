"""Specification of bot.text.turn_input: the text the model receives for a turn."""

from __future__ import annotations

import pytest

from bot.text.turn_input import build_turn_input

# ---------------------------------------------------------------------------
# build_turn_input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "history", "is_group", "expected"),
    [
        pytest.param([("Alice", "hi")], (), False, "hi", id="one message 1:1"),
        pytest.param(
            [("Alice", "hi"), ("Alice", "and also")],
            (),
            False,
            "hi\n\nand also",
            id="several messages one author 1:1",
        ),
        pytest.param([("Alice", "hi")], (), True, "Alice: hi", id="group names the author"),
        pytest.param(
            [("Alice", "hi"), ("Bob", "yo")],
            (),
            False,
            "Alice: hi\nBob: yo",
            id="several authors are named",
        ),
        pytest.param(
            [("Alice", "what do you think?")],
            [("Bob", "we should ship"), ("Carol", "not yet")],
            False,
            "Earlier messages in this Slack thread:\n"
            "Bob: we should ship\n"
            "Carol: not yet\n"
            "\n"
            "Alice: what do you think?",
            id="history comes first",
        ),
        pytest.param(
            [("Alice", "  hi  "), ("Bob", "   ")],
            (),
            False,
            "hi",
            id="blank messages left out",
        ),
        pytest.param(
            [("Alice", "line 1\nline 2")],
            (),
            True,
            "Alice: line 1\nline 2",
            id="multi-line message",
        ),
    ],
)
def test_build_turn_input(
    messages: list[tuple[str, str]],
    history: list[tuple[str, str]],
    is_group: bool,
    expected: str,
) -> None:
    assert build_turn_input(messages, history=history, is_group=is_group) == expected
