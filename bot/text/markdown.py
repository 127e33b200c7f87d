"""The model's Markdown (CommonMark / GitHub flavoured) -> Slack mrkdwn, block by block:
headings, lists, quotes, code blocks and tables; each line's inline Markdown by `inline`."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Generator, Iterator

from bot.escape import escape_mrkdwn
from bot.text.inline import (
    ALREADY_BOLD_MARKERS,
    inline_mrkdwn,
    inline_plain,
    without_placeholder_chars,
)
from bot.text.slack_syntax import FENCE

HORIZONTAL_RULE = "───"
_FENCE_OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_BULLET_ITEM = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+(?P<content>.*)$")
_ORDERED_ITEM = re.compile(r"^(?P<indent>[ \t]*)(?P<number>\d{1,9}[.)])[ \t]+(?P<content>.*)$")
_TASK_BOX = re.compile(r"^\[(?P<state>[ xX])\][ \t]+")
_BLOCKQUOTE = re.compile(r"^[ \t]{0,3}>")
_QUOTE_MARKERS = re.compile(r"^(?:[ \t]*>[ \t]?)+")
_TABLE_DELIMITER_CELL = re.compile(r"^:?-+:?$")
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
_BULLET_SYMBOLS = ("•", "◦", "▪")
_NESTING_INDENT = "    "


def markdown_to_mrkdwn(markdown: str) -> str:
    """Converts the model's (CommonMark / GitHub flavoured) Markdown into Slack mrkdwn."""
    lines = without_placeholder_chars(markdown).replace("\r\n", "\n").split("\n")
    return "\n".join(_convert_blocks(lines)).strip("\n")


class _ListNesting:
    """Tracks the indentation of open list levels to tell an item's depth."""

    def __init__(self) -> None:
        self._indents: list[int] = []

    def depth_of(self, indent: str) -> int:
        width = len(indent.expandtabs(4))
        while self._indents and self._indents[-1] > width:
            self._indents.pop()
        if not self._indents or self._indents[-1] < width:
            self._indents.append(width)
        return len(self._indents) - 1

    def reset(self) -> None:
        self._indents.clear()


def _convert_blocks(lines: list[str]) -> Iterator[str]:
    nesting = _ListNesting()
    index = 0
    while index < len(lines):
        line = lines[index]
        if (fence := _FENCE_OPENING.match(line)) and _is_code_fence(fence):
            index = yield from _convert_code_block(lines, index, fence)
            continue
        if _starts_table(lines, index):
            index = yield from _convert_table(lines, index)
            continue
        if line.strip() and not line[:1].isspace() and not _is_list_item(line):
            nesting.reset()
        yield _convert_line(line, nesting)
        index += 1


def _is_code_fence(opening: re.Match[str]) -> bool:
    """```` ```x``` ```` on one line is inline code, not the start of a block."""
    return opening["fence"][0] == "~" or "`" not in opening["info"]


def _convert_code_block(
    lines: list[str], start: int, opening: re.Match[str]
) -> Generator[str, None, int]:
    """Yields a fenced code block without its language tag; returns the next index."""
    fence = opening["fence"]
    closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
    indent_width = len(opening["indent"])
    yield FENCE
    index = start + 1
    while index < len(lines) and not closing.match(lines[index]):
        yield escape_mrkdwn(_dedent(lines[index], indent_width))
        index += 1
    yield FENCE
    return index + 1


def _dedent(line: str, width: int) -> str:
    """Removes up to `width` leading spaces, as CommonMark does inside an indented fence."""
    removable = len(line) - len(line.lstrip(" "))
    return line[min(width, removable) :]


def _convert_line(line: str, nesting: _ListNesting) -> str:
    if _BLOCKQUOTE.match(line):
        content = _convert_line(_QUOTE_MARKERS.sub("", line), nesting)
        return f"> {content}" if content else ">"
    if heading := _HEADING.match(line):
        text = heading["text"] or ""
        return f"*{inline_mrkdwn(text, markers=ALREADY_BOLD_MARKERS)}*" if text else ""
    if _THEMATIC_BREAK.match(line):
        return HORIZONTAL_RULE
    if item := _BULLET_ITEM.match(line):
        depth = nesting.depth_of(item["indent"])
        symbol = _BULLET_SYMBOLS[depth % len(_BULLET_SYMBOLS)]
        return f"{_NESTING_INDENT * depth}{symbol} {_list_item_content(item['content'])}"
    if item := _ORDERED_ITEM.match(line):
        depth = nesting.depth_of(item["indent"])
        return f"{_NESTING_INDENT * depth}{item['number']} {_list_item_content(item['content'])}"
    return inline_mrkdwn(line.rstrip())


def _is_list_item(line: str) -> bool:
    if _THEMATIC_BREAK.match(line):
        return False
    return bool(_BULLET_ITEM.match(line) or _ORDERED_ITEM.match(line))


def _list_item_content(content: str) -> str:
    """Converts an item's text, showing GitHub task boxes `[ ]`/`[x]` as ☐/☑."""
    if box := _TASK_BOX.match(content):
        symbol = "☐" if box["state"] == " " else "☑"
        return f"{symbol} {inline_mrkdwn(content[box.end() :].rstrip())}"
    return inline_mrkdwn(content.rstrip())


# GitHub pipe tables become aligned monospace text, since Slack has no tables.


def _starts_table(lines: list[str], index: int) -> bool:
    if index + 1 >= len(lines) or "|" not in lines[index]:
        return False
    delimiter = lines[index + 1]
    if "|" not in delimiter and "-" not in delimiter:
        return False
    delimiter_cells = _table_cells(delimiter)
    if not all(_TABLE_DELIMITER_CELL.match(cell) for cell in delimiter_cells):
        return False
    return len(delimiter_cells) == len(_table_cells(lines[index]))


def _convert_table(lines: list[str], start: int) -> Generator[str, None, int]:
    """Yields a table as a code block with aligned columns; returns the next index."""
    rows = [_table_cells(lines[start])]
    index = start + 2
    while index < len(lines) and "|" in lines[index] and lines[index].strip():
        rows.append(_table_cells(lines[index]))
        index += 1
    yield FENCE
    yield from (escape_mrkdwn(line) for line in _aligned_table([_plain_cells(row) for row in rows]))
    yield FENCE
    return index


def _table_cells(row: str) -> list[str]:
    row = row.strip()
    row = row.removeprefix("|")
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [cell.strip().replace("\\|", "|") for cell in _UNESCAPED_PIPE.split(row)]


def _plain_cells(row: list[str]) -> list[str]:
    return [inline_plain(cell) for cell in row]


def _aligned_table(rows: list[list[str]]) -> list[str]:
    columns = max(len(row) for row in rows)
    rows = [row + [""] * (columns - len(row)) for row in rows]
    widths = [max(_display_width(row[column]) for row in rows) for column in range(columns)]
    rendered = [_table_row(row, widths) for row in rows]
    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return [rendered[0], separator, *rendered[1:]]


def _table_row(cells: list[str], widths: list[int]) -> str:
    padded = (
        cell + " " * (width - _display_width(cell))
        for cell, width in zip(cells, widths, strict=True)
    )
    return "| " + " | ".join(padded) + " |"


def _display_width(text: str) -> int:
    """Counts East Asian wide characters as two columns, as monospace fonts show them."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)
