"""CommonMark's link syntax, `[label](destination "title")`: where its parts begin and end."""

from __future__ import annotations


def parse_link_parts(text: str, start: int) -> tuple[str, str, int] | None:
    """Parses `[label](destination "title")` at `start`: (label, url, end)."""
    label_end = _matching_bracket(text, start)
    if label_end is None or not text.startswith("(", label_end + 1):
        return None
    destination = _parse_destination(text, label_end + 2)
    if destination is None:
        return None
    url, end = destination
    return text[start + 1 : label_end], url, end


def _matching_bracket(text: str, start: int) -> int | None:
    depth = 0
    position = start
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return position
        position += 1
    return None


def _parse_destination(text: str, start: int) -> tuple[str, int] | None:
    """Parses the inside of a link's parentheses: (url, index after the `)`)."""
    position = _skip_spaces(text, start)
    if text.startswith("<", position):
        close = text.find(">", position)
        if close < 0:
            return None
        url, position = text[position + 1 : close], close + 1
    else:
        end = _destination_end(text, position)
        url, position = text[position:end], end
    after_title = _skip_title(text, _skip_spaces(text, position))
    if after_title is None or not text.startswith(")", after_title):
        return None
    return url, after_title + 1


def _destination_end(text: str, start: int) -> int:
    """A bare destination ends at whitespace or at a `)` that closes nothing."""
    depth = 0
    position = start
    while position < len(text) and not text[position].isspace():
        char = text[position]
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                break
            depth -= 1
        position += 2 if char == "\\" else 1
    return min(position, len(text))


def _skip_title(text: str, start: int) -> int | None:
    closing = {'"': '"', "'": "'", "(": ")"}.get(text[start : start + 1])
    if closing is None:
        return start
    end = text.find(closing, start + 1)
    return None if end < 0 else _skip_spaces(text, end + 1)


def _skip_spaces(text: str, start: int) -> int:
    while start < len(text) and text[start] in " \t":
        start += 1
    return start
