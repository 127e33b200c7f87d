"""File-search citations in the model's answer: stripped, or shown as numbered footnotes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_CITATION_MARKER = re.compile(r"[ \t]*(?:【[^【】\n]*†[^【】\n]*】|\[\d+(?::\d+)*†[^\[\]\n]*\])")


def strip_citation_markers(text: str) -> str:
    """Removes file-search citations such as `【4:0†source】` and `[4:0†report.pdf]`."""
    return _CITATION_MARKER.sub("", text)


@dataclass(frozen=True)
class Source:
    """Something the answer cites: a web page, or a file found by file search."""

    title: str
    url: str | None = None
    marker: str | None = None


def with_sources(text: str, sources: Sequence[Source]) -> str:
    """The answer with its citations as numbered footnotes instead of raw markers.

    A marker such as `【4:0†report.pdf】` becomes `[1]`, and a "Sources" list closes the answer;
    a source cited several times gets one number.
    """
    numbers: dict[tuple[str, str | None], int] = {}
    for source in sources:
        number = numbers.setdefault((source.title, source.url), len(numbers) + 1)
        if source.marker:
            text = text.replace(source.marker, f" [{number}]")
    text = strip_citation_markers(text)
    if not numbers:
        return text
    lines = [
        f"{number}. [{title}]({url})" if url else f"{number}. {title}"
        for (title, url), number in numbers.items()
    ]
    return text.rstrip() + "\n\n**Sources**\n" + "\n".join(lines)


def marker_title(marker: str) -> str:
    """`【4:0†report.pdf】` → `report.pdf` (what file search shows as the cited file)."""
    return marker.split("†", 1)[-1].rstrip("】]").strip() or "source"
