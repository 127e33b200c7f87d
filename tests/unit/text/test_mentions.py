"""Specification of bot.text.mentions: the model's mentions shown by name, never a ping."""

from __future__ import annotations

import pytest

from bot.text.markdown import markdown_to_mrkdwn
from bot.text.mentions import (
    NO_PING,
    name_mentions,
    split_unfinished,
    unlabelled_mentions,
    unping_markdown,
)


@pytest.mark.parametrize(
    ("markdown", "shown"),
    [
        pytest.param("hi <@U111>", f"hi {NO_PING}U111", id="user"),
        pytest.param("<@U111|a&b> hi", f"{NO_PING}a&b hi", id="label kept as Markdown"),
        pytest.param("<!channel> **now**", f"{NO_PING}channel **now**", id="broadcast"),
        pytest.param("<!subteam^S1|@ops>", f"{NO_PING}ops", id="group"),
        pytest.param("@everyone", f"{NO_PING}everyone", id="bare"),
        pytest.param("<https://x.y> and <#C1>", "<https://x.y> and <#C1>", id="links untouched"),
    ],
)
def test_unping_markdown_for_streamed_previews(markdown: str, shown: str) -> None:
    assert unping_markdown(markdown) == shown


@pytest.mark.parametrize(
    ("text", "now", "held"),
    [
        pytest.param("ask <@U12", "ask ", "<@U12", id="user id cut short"),
        pytest.param("ask <@U12|Al", "ask ", "<@U12|Al", id="label cut short"),
        pytest.param("ask <", "ask ", "<", id="bare bracket"),
        pytest.param("tell <!chan", "tell ", "<!chan", id="broadcast cut short"),
        pytest.param("tell @ever", "tell ", "@ever", id="bare broadcast cut short"),
        pytest.param("tell @", "tell ", "@", id="bare at"),
        pytest.param("ask <@U12> now", "ask <@U12> now", "", id="whole mention"),
        pytest.param("a < b", "a < b", "", id="less than"),
        pytest.param("see <https://x.y", "see <https://x.y", "", id="link"),
        pytest.param("mail bob@ex", "mail bob@ex", "", id="address"),
        pytest.param("hi @alan", "hi @alan", "", id="no broadcast"),
        pytest.param("x <@" + "U" * 300, "x <@" + "U" * 300, "", id="too long to be one"),
        pytest.param("line <@U1\nnext", "line <@U1\nnext", "", id="no mention spans lines"),
    ],
)
def test_a_chunk_holds_back_what_may_become_a_mention(text: str, now: str, held: str) -> None:
    assert split_unfinished(text) == (now, held)


@pytest.mark.parametrize(
    ("markdown", "names", "expected"),
    [
        pytest.param("ask <@U1>", {"U1": "Alan"}, "ask <@U1|Alan>", id="named"),
        pytest.param("ask <@U1>", {}, "ask <@U1>", id="unknown"),
        pytest.param("ask <@U1|Al>", {"U1": "Alan"}, "ask <@U1|Al>", id="labelled already"),
        pytest.param("<@U1> <@W2>", {"U1": "A", "W2": "B"}, "<@U1|A> <@W2|B>", id="two"),
        pytest.param("ask <@U1>", {"U1": "a<b>|c"}, "ask <@U1|abc>", id="markup in a name"),
    ],
)
def test_mentions_are_labelled_with_names(
    markdown: str, names: dict[str, str], expected: str
) -> None:
    assert name_mentions(markdown, names) == expected
    assert unlabelled_mentions(markdown) == [u for u in ("U1", "W2") if f"<@{u}>" in markdown]


def test_a_named_mention_reads_as_the_name_and_pings_nobody() -> None:
    assert unping_markdown(name_mentions("ask <@U1>", {"U1": "Alan"})) == f"ask {NO_PING}Alan"
    assert markdown_to_mrkdwn(name_mentions("ask <@U1>", {"U1": "Alan"})) == f"ask {NO_PING}Alan"
