"""Splitting a long mrkdwn message into chunks that each fit into one Slack message."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from bot.text.slack_syntax import FENCE

DEFAULT_MESSAGE_LIMIT = 3900
_MIN_SPLIT_LIMIT = 16
_REOPENING_FENCE = FENCE + "\n"
_CLOSING_FENCE = "\n" + FENCE
_LEADING_BLANK_LINES = re.compile(r"^(?:[ \t]*\n)+")
_BREAKS_BY_PREFERENCE = (
    re.compile(r"\n(?:[ \t]*\n)+"),  # paragraph break
    re.compile(r"\n"),  # line break
    re.compile(r"(?<=[.!?])[ \t]+"),  # sentence end
    re.compile(r"[ \t]+"),  # word boundary
)
_SLACK_ANGLE_TOKEN = re.compile(r"<[^<>\n]*>")


@dataclass(frozen=True)
class _Cut:
    """Where to split: the chunk is `rest[:end]`, the remainder `rest[resume:]`."""

    end: int
    resume: int


def split_message(text: str, *, limit: int = DEFAULT_MESSAGE_LIMIT) -> list[str]:
    """Splits a mrkdwn message into chunks of at most `limit` characters.

    A code block cut in two is closed at the end of one chunk and reopened at
    the start of the next, so both halves still render as code.
    """
    if limit < _MIN_SPLIT_LIMIT:
        raise ValueError(f"limit must be at least {_MIN_SPLIT_LIMIT}, got {limit}")
    chunks: list[str] = []
    rest = text
    in_code = False
    while True:
        rest = _LEADING_BLANK_LINES.sub("", rest)
        if in_code and rest.lstrip().startswith(FENCE):
            # The code block ends right here: the closing fence already added stands in.
            rest, in_code = rest.lstrip()[len(FENCE) :], False
            continue
        if not rest.strip():
            return chunks
        prefix = _REOPENING_FENCE if in_code else ""
        if len(prefix) + len(rest.rstrip()) <= limit:
            return [*chunks, prefix + rest.rstrip()]
        chunk, rest, in_code = _take_chunk(rest, prefix=prefix, limit=limit)
        if chunk.strip():
            chunks.append(chunk)


def _take_chunk(rest: str, *, prefix: str, limit: int) -> tuple[str, str, bool]:
    """Cuts one chunk off `rest`: (chunk, remainder, whether the cut is inside code)."""
    layout = _ChunkLayout(rest, starts_in_code=bool(prefix), budget=limit - len(prefix))
    cut = layout.best_cut()
    body = prefix + rest[: cut.end].rstrip()
    ends_in_code = layout.in_code_at(cut.end)
    if ends_in_code:
        body += _CLOSING_FENCE
    remainder = rest[cut.resume :]
    if "\n" not in rest[cut.end : cut.resume]:
        remainder = remainder.lstrip(" \t")  # a mid-line cut: drop the spaces between words
    return body, remainder, ends_in_code


def _unsplittable_tokens(text: str, *, budget: int) -> Iterator[tuple[int, int]]:
    """Spans of `<…>` tokens (links, mentions) near the cut that would fit in a chunk."""
    for match in _SLACK_ANGLE_TOKEN.finditer(text):
        if match.start() > budget:
            return
        if len(match[0]) <= budget:
            yield match.span()


class _ChunkLayout:
    """Knows where code fences and Slack `<…>` tokens lie in the text to be cut."""

    def __init__(self, rest: str, *, starts_in_code: bool, budget: int) -> None:
        self._rest = rest
        self._starts_in_code = starts_in_code
        self._budget = budget
        self._fence_ends = [match.end() for match in re.finditer(FENCE, rest)]
        self._tokens = list(_unsplittable_tokens(rest, budget=budget))

    def in_code_at(self, position: int) -> bool:
        fences_before = bisect_right(self._fence_ends, position)
        return (fences_before + self._starts_in_code) % 2 == 1

    def best_cut(self) -> _Cut:
        """Prefers the coarsest break that fills at least half the chunk, then any break."""
        for minimum_end in (self._budget // 2, 1):
            for pattern in _BREAKS_BY_PREFERENCE:
                cut = self._last_acceptable_cut(pattern, minimum_end=minimum_end)
                if cut is not None:
                    return cut
        return self._hard_cut()

    def _last_acceptable_cut(self, pattern: re.Pattern[str], *, minimum_end: int) -> _Cut | None:
        window = self._rest[: self._budget + 1]
        cuts = [_Cut(match.start(), match.end()) for match in pattern.finditer(window)]
        for cut in reversed(cuts):
            if cut.end < minimum_end:
                return None
            if self._is_acceptable(cut.end):
                return cut
        return None

    def _is_acceptable(self, end: int) -> bool:
        return (
            self._fits(end)
            and bool(self._rest[:end].strip())
            and not self._inside_token(end)
            and not self._ends_with_opening_fence(end)
        )

    def _inside_token(self, position: int) -> bool:
        return any(start < position < end for start, end in self._tokens)

    def _ends_with_opening_fence(self, end: int) -> bool:
        """A cut right after an opening fence would leave an empty code block."""
        last_line = self._rest[:end].rstrip().rpartition("\n")[2]
        return self.in_code_at(end) and last_line.lstrip().startswith(FENCE)

    def _hard_cut(self) -> _Cut:
        """Splits an overlong word, avoiding the middle of a backtick run."""
        for end in range(self._budget, 0, -1):
            if not self._splits_backtick_run(end) and self._fits(end):
                return _Cut(end, end)
        fallback = self._budget - len(_CLOSING_FENCE)  # a chunk of nothing but backticks
        return _Cut(fallback, fallback)

    def _splits_backtick_run(self, position: int) -> bool:
        return self._rest[position - 1] == "`" == self._rest[position : position + 1]

    def _fits(self, end: int) -> bool:
        closing_cost = len(_CLOSING_FENCE) if self.in_code_at(end) else 0
        return end + closing_cost <= self._budget
