"""What of a long chat thread is sent: the pure decisions of bot/assistants/context.py."""

from __future__ import annotations

import pytest

from bot.assistants.context import (
    DEFAULT_BUDGET,
    MESSAGE_OVERHEAD_TOKENS,
    ContextPlan,
    Entry,
    context_budget,
    cut_text,
    estimate_tokens,
    plan_context,
)


def thread(*tokens: int, first_seq: int = 1) -> list[Entry]:
    """Alternating user/assistant messages with these token costs."""
    return [
        Entry(seq=first_seq + i, role="user" if i % 2 == 0 else "assistant", tokens=cost)
        for i, cost in enumerate(tokens)
    ]


@pytest.mark.parametrize(
    ("text", "images", "expected"),
    [
        ("", 0, MESSAGE_OVERHEAD_TOKENS),
        ("abc", 0, 1 + MESSAGE_OVERHEAD_TOKENS),
        ("abcd", 0, 2 + MESSAGE_OVERHEAD_TOKENS),  # rounds up: never under
        ("日本語", 0, 3 + MESSAGE_OVERHEAD_TOKENS),  # a token a non-ASCII character
        ("a" * 300, 0, 100 + MESSAGE_OVERHEAD_TOKENS),
        ("hi", 2, 1 + MESSAGE_OVERHEAD_TOKENS + 2 * 800),
    ],
)
def test_token_estimate_is_never_low(text: str, images: int, expected: int) -> None:
    assert estimate_tokens(text, images=images) == expected


@pytest.mark.parametrize(
    ("model", "configured", "expected"),
    [
        ("gpt-4o", None, 112_000),
        ("gpt-4o-mini-2024-07-18", None, 112_000),
        ("gpt-4.1-nano", None, 1_000_000),
        ("gpt-4", None, 6_000),
        ("gpt-4-turbo", None, 112_000),  # the longest matching prefix wins
        ("gpt-5-mini", None, 272_000),
        ("o4-mini", None, 100_000),
        ("openai/gpt-4o", None, 112_000),  # a LiteLLM provider prefix
        ("llama3.2", None, DEFAULT_BUDGET),
        ("my-azure-deployment", None, DEFAULT_BUDGET),
        ("gpt-4o", 2_000, 2_000),  # CONTEXT_TOKENS wins
    ],
)
def test_budget_per_model(model: str, configured: int | None, expected: int) -> None:
    assert context_budget(model, configured) == expected


@pytest.mark.parametrize(
    ("case", "kwargs", "expected"),
    [
        (
            "a new thread sends only the question",
            {"history": [], "newest_tokens": 50},
            ContextPlan(send_from_seq=None),
        ),
        (
            "everything fits: all of it goes",
            {"history": thread(100, 100, 100, 100), "newest_tokens": 50},
            ContextPlan(send_from_seq=1),
        ),
        (
            "a stored summary and what came after it",
            {
                "history": thread(100, 100, 100, 100, first_seq=11),
                "newest_tokens": 50,
                "summary_through": 10,
                "summary_tokens": 80,
            },
            ContextPlan(send_from_seq=11, use_summary=True),
        ),
        (
            "too much: the newest that fit in half the room stay, the rest is summarised",
            # room 1000-100-50 = 850; less the summary's 125 → 725; half → 362: three messages
            # (120 each) fit, but the oldest of those is an answer, so two are kept from seq 9.
            {"history": thread(*[120] * 10), "newest_tokens": 50},
            ContextPlan(send_from_seq=9, use_summary=True, summarise_through=8),
        ),
        (
            "a summary covers what it covers; only newly dropped messages are summarised",
            {
                "history": thread(*[120] * 10, first_seq=21),
                "newest_tokens": 50,
                "summary_through": 20,
                "summary_tokens": 100,
            },
            ContextPlan(send_from_seq=29, use_summary=True, summarise_through=28),
        ),
        (
            "a message larger than the budget is cut, and nothing else fits",
            {"history": thread(100, 100), "newest_tokens": 5_000},
            ContextPlan(send_from_seq=None, cut_to_tokens=900),
        ),
        (
            "no room for a summary: only the question",
            {"history": thread(400, 400), "newest_tokens": 850},
            ContextPlan(send_from_seq=None),
        ),
    ],
)
def test_plan_context(case: str, kwargs: dict[str, object], expected: ContextPlan) -> None:
    plan = plan_context(budget=1_000, instructions_tokens=100, **kwargs)  # type: ignore[arg-type]
    assert plan == expected, case


def test_a_summary_is_made_once_per_dropped_range_not_every_turn() -> None:
    """Turn after turn, a new summary is needed only when the kept half has filled up."""
    summary_through: int | None = None
    history: list[Entry] = []
    summaries = 0
    for turn in range(100):
        plan = plan_context(
            budget=2_000,
            instructions_tokens=50,
            history=history,
            newest_tokens=60,
            summary_through=summary_through,
            summary_tokens=200 if summary_through else 0,
        )
        if plan.summarise_through is not None:
            summaries += 1
            summary_through = plan.summarise_through
        seq = 2 * turn + 1
        history += [Entry(seq, "user", 60), Entry(seq + 1, "assistant", 60)]
    # 200 messages of 60 tokens = 12,000 tokens through a 2,000-token window.
    assert 5 <= summaries <= 15


@pytest.mark.parametrize("limit", [10, 100, 1_000])
def test_cut_text_keeps_the_longest_beginning_that_fits(limit: int) -> None:
    text = "word " * 2_000
    cut = cut_text(text, limit)
    assert text.startswith(cut)
    assert estimate_tokens(cut) <= limit < estimate_tokens(text[: len(cut) + 1])


def test_cut_text_leaves_short_text_alone() -> None:
    assert cut_text("short", 100) == "short"
