"""What of a long chat thread fits in the model's window: pure decisions, no I/O.

The chat backend sends the whole conversation on every turn, so a long Slack thread would
eventually exceed the model's context window. `plan_context` decides, from token estimates
alone, what a turn sends: the instructions, a summary standing in for the older turns when
they no longer fit, then the newest turns that do, then the new message (cut, with a note to
the user, if it alone is larger than the budget).

Tokens are estimated, not counted: tiktoken downloads its encodings on first use, which a
bot without outbound access to its CDN cannot do, and other providers' models use other
tokenizers anyway. The estimate is deliberately high (one token for every three ASCII
characters, where OpenAI's tokenizers average about four; one per non-ASCII character; a
fixed cost per message and per image), and a request the API still finds too long is
retried once with half the budget (see `bot/assistants/chat.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ASCII_CHARS_PER_TOKEN = 3
MESSAGE_OVERHEAD_TOKENS = 4
IMAGE_TOKENS = 800
SUMMARY_MAX_TOKENS = 1000
DEFAULT_BUDGET = 6_000
"""For a model the bot does not know (a local one, an Azure deployment name): what fits an
8k window with room left for the answer. Set CONTEXT_TOKENS for anything bigger."""

CUT_NOTE = "(Your message was too long for the model; I read only its first part.)"

# Model name prefix → tokens the bot may send: the model's input limit, less room to answer.
# Longest prefix wins; a provider prefix such as LiteLLM's "openai/" is ignored.
KNOWN_BUDGETS: tuple[tuple[str, int], ...] = (
    ("gpt-5", 272_000),
    ("gpt-4.1", 1_000_000),
    ("gpt-4o", 112_000),
    ("gpt-4-turbo", 112_000),
    ("gpt-4", 6_000),
    ("gpt-3.5-turbo", 12_000),
    ("o1", 100_000),
    ("o3", 100_000),
    ("o4", 100_000),
)


def estimate_tokens(text: str, *, images: int = 0) -> int:
    """A safe (high) estimate of the tokens one message costs; see the module docstring."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    other_chars = len(text) - ascii_chars
    return (
        math.ceil(ascii_chars / ASCII_CHARS_PER_TOKEN)
        + other_chars
        + MESSAGE_OVERHEAD_TOKENS
        + images * IMAGE_TOKENS
    )


def context_budget(model: str, configured: int | None) -> int:
    """CONTEXT_TOKENS when set, else the known budget for the model, else a safe default."""
    if configured is not None:
        return configured
    name = model.rsplit("/", 1)[-1].lower()
    matches = [(prefix, budget) for prefix, budget in KNOWN_BUDGETS if name.startswith(prefix)]
    if not matches:
        return DEFAULT_BUDGET
    return max(matches, key=lambda match: len(match[0]))[1]


def summary_room(budget: int) -> int:
    """The most tokens a summary of dropped turns may take: an eighth of the budget, capped."""
    return min(SUMMARY_MAX_TOKENS, budget // 8)


@dataclass(frozen=True)
class Entry:
    """A stored message as the planner sees it: its place in the thread and its cost."""

    seq: int
    role: str
    tokens: int


@dataclass(frozen=True)
class ContextPlan:
    """What one turn sends.

    `send_from_seq`: stored messages from this seq on are sent (None: no history).
    `use_summary`: the thread's summary is sent (after the instructions).
    `summarise_through`: before sending, a new summary must be made covering the thread up to
    this seq (the old summary and the newly dropped messages); None: the stored one serves.
    `cut_to_tokens`: the new message alone exceeds the budget: send only its first part, of
    at most this many tokens, and tell the user.
    """

    send_from_seq: int | None
    use_summary: bool = False
    summarise_through: int | None = None
    cut_to_tokens: int | None = None


def plan_context(
    *,
    budget: int,
    instructions_tokens: int,
    history: Sequence[Entry],
    newest_tokens: int,
    summary_through: int | None = None,
    summary_tokens: int = 0,
) -> ContextPlan:
    """Decide what a turn sends; `history` is the thread before the new message, oldest first.

    Messages the stored summary already covers (seq <= summary_through) are never sent.
    When the rest does not fit, the newest messages that fit in half of what is left are
    kept and everything older goes into a new summary: the half left free lets the next
    several turns fit without summarising again, so a summary is made once per dropped
    range, not on every turn. Kept history starts at a user message, never at an answer
    whose question was dropped.
    """
    room = max(budget - instructions_tokens, budget // 4)
    if newest_tokens > room:
        return ContextPlan(send_from_seq=None, cut_to_tokens=room)
    room -= newest_tokens
    pending = [e for e in history if summary_through is None or e.seq > summary_through]
    has_summary = summary_through is not None
    cost = sum(e.tokens for e in pending) + (summary_tokens if has_summary else 0)
    if cost <= room:
        return ContextPlan(
            send_from_seq=pending[0].seq if pending else None, use_summary=has_summary
        )
    summary_cost = summary_room(budget)
    if room < summary_cost:
        return ContextPlan(send_from_seq=None)
    kept = newest_fitting([e.tokens for e in pending], (room - summary_cost) // 2)
    start = len(pending) - kept
    while start < len(pending) and pending[start].role != "user":
        start += 1
    send_from = pending[start].seq if start < len(pending) else None
    if start == 0:  # only the stored summary was too big; it is replaced, nothing new dropped
        return ContextPlan(send_from_seq=send_from)
    return ContextPlan(
        send_from_seq=send_from, use_summary=True, summarise_through=pending[start - 1].seq
    )


def newest_fitting(costs: Sequence[int], room: int) -> int:
    """How many of the newest items (the end of `costs`) fit in `room` together."""
    total, count = 0, 0
    for cost in reversed(costs):
        if total + cost > room:
            break
        total += cost
        count += 1
    return count


def cut_text(text: str, max_tokens: int) -> str:
    """The longest beginning of `text` whose estimate fits in `max_tokens`."""
    if estimate_tokens(text) <= max_tokens:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if estimate_tokens(text[:middle]) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low]
