"""Specification of bot.text.citations: file-search citation markers."""

from __future__ import annotations

import pytest

from bot.text.citations import strip_citation_markers

# ---------------------------------------------------------------------------
# strip_citation_markers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        pytest.param("Fact【4:0†source】.", "Fact.", id="source marker"),
        pytest.param("Fact 【4:0†report.pdf】.", "Fact.", id="file name with space before"),
        pytest.param("Fact [4:0†source].", "Fact.", id="square brackets"),
        pytest.param("A【4:0†a】【4:1†b】 B", "A B", id="adjacent markers"),
        pytest.param("Fact【12†source】", "Fact", id="without colon"),
        pytest.param("See [the docs] and [1]", "See [the docs] and [1]", id="brackets kept"),
        pytest.param("line 1【4:0†s】\nline 2", "line 1\nline 2", id="keeps line breaks"),
    ],
)
def test_strip_citation_markers(text: str, stripped: str) -> None:
    assert strip_citation_markers(text) == stripped
