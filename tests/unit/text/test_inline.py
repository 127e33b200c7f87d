"""Specification of bot.text.inline, through markdown_to_mrkdwn: inline Markdown as mrkdwn."""

from __future__ import annotations

import pytest

from bot.text.markdown import markdown_to_mrkdwn
from bot.text.mentions import (
    NO_PING,
)

# ---------------------------------------------------------------------------
# markdown_to_mrkdwn: inline
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        pytest.param("plain words", "plain words", id="plain"),
        pytest.param("**bold**", "*bold*", id="bold stars"),
        pytest.param("__bold__", "*bold*", id="bold underscores"),
        pytest.param("*italic*", "_italic_", id="italic star"),
        pytest.param("_italic_", "_italic_", id="italic underscore"),
        pytest.param("***both***", "*_both_*", id="bold italic stars"),
        pytest.param("___both___", "*_both_*", id="bold italic underscores"),
        pytest.param("~~strike~~", "~strike~", id="strikethrough"),
        pytest.param("a **b** c *d* e", "a *b* c _d_ e", id="several in a line"),
        pytest.param("**bold with *italic* inside**", "*bold with _italic_ inside*", id="nested"),
        pytest.param("*it **bo** it*", "_it *bo* it_", id="bold inside italic"),
        pytest.param("**two words**", "*two words*", id="bold spanning words"),
        pytest.param("(**bold**)", "(*bold*)", id="bold inside punctuation"),
        pytest.param("**bold**:", "*bold*:", id="bold before punctuation"),
        pytest.param("~tilde~ ~ 5 min", "~tilde~ ~ 5 min", id="single tildes left alone"),
    ],
)
def test_markdown_emphasis(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        pytest.param("snake_case_name", "snake_case_name", id="underscores inside a word"),
        pytest.param("call my_func_name()", "call my_func_name()", id="identifier"),
        pytest.param("_private_var", "_private_var", id="leading underscore identifier"),
        pytest.param("2*3*4 = 24", "2*3*4 = 24", id="multiplication"),
        pytest.param("2 * 3 * 4", "2 * 3 * 4", id="spaced multiplication"),
        pytest.param("a*b and c*d", "a*b and c*d", id="asterisks inside words"),
        pytest.param("** not bold **", "** not bold **", id="spaces inside delimiters"),
        pytest.param("**unclosed bold", "**unclosed bold", id="unclosed bold"),
        pytest.param("*unclosed italic", "*unclosed italic", id="unclosed italic"),
        pytest.param("foo**bar**baz", "foo**bar**baz", id="intraword bold"),
        pytest.param("\\*not italic\\*", "*not italic*", id="backslash escapes"),
        pytest.param("__init__", "*init*", id="dunder is bold like CommonMark"),
        pytest.param("file_name.py_", "file_name.py_", id="trailing underscore"),
    ],
)
def test_markdown_emphasis_edge_cases(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        pytest.param("[label](https://x.y)", "<https://x.y|label>", id="link"),
        pytest.param("[**bold** label](https://x.y)", "<https://x.y|bold label>", id="label plain"),
        pytest.param('[t](https://x.y "Title")', "<https://x.y|t>", id="link title dropped"),
        pytest.param("[t](<https://x.y/a b>)", "<https://x.y/a%20b|t>", id="angle destination"),
        pytest.param("[https://x.y](https://x.y)", "<https://x.y>", id="label equals url"),
        pytest.param(
            "[wiki](https://en.wikipedia.org/wiki/Foo_(bar))",
            "<https://en.wikipedia.org/wiki/Foo_(bar)|wiki>",
            id="parentheses in url",
        ),
        pytest.param(
            "[x](https://x.y/a_b_c*d*)", "<https://x.y/a_b_c*d*|x>", id="emphasis chars in url"
        ),
        pytest.param("[a|b](https://x.y/?q=a|b)", "<https://x.y/?q=a%7Cb|a|b>", id="pipe in url"),
        pytest.param("[x](https://x.y/?a=1&b=2)", "<https://x.y/?a=1&amp;b=2|x>", id="ampersand"),
        pytest.param("[a < b](https://x.y)", "<https://x.y|a &lt; b>", id="escaped label"),
        pytest.param("[empty]()", "empty", id="empty destination"),
        pytest.param("[not a link] (x)", "[not a link] (x)", id="space before parenthesis"),
        pytest.param("[unclosed](https://x.y", "[unclosed](<https://x.y>", id="unclosed link"),
        pytest.param("![a cat](https://x.y/cat.png)", "<https://x.y/cat.png|a cat>", id="image"),
        pytest.param("![](https://x.y/cat.png)", "<https://x.y/cat.png>", id="image without alt"),
        pytest.param(
            "[![badge](https://x.y/b.svg)](https://x.y)", "<https://x.y|badge>", id="linked image"
        ),
        pytest.param("<https://x.y/a_b_>", "<https://x.y/a_b_>", id="autolink"),
        pytest.param("<mailto:a@b.c>", "<mailto:a@b.c>", id="mailto autolink"),
        pytest.param("<a@b.c>", "<mailto:a@b.c|a@b.c>", id="email autolink"),
        pytest.param("go to https://x.y/a_b_c now", "go to <https://x.y/a_b_c> now", id="bare"),
        pytest.param("see https://x.y/a*b*c.", "see <https://x.y/a*b*c>.", id="bare stars"),
        pytest.param("(https://x.y/a)", "(<https://x.y/a>)", id="bare url in parentheses"),
        pytest.param("https://x.y/a_", "<https://x.y/a_>", id="bare url ending in underscore"),
        pytest.param("**https://x.y/a**", "*<https://x.y/a>*", id="bold bare url"),
        pytest.param("_https://x.y/a_", "_<https://x.y/a>_", id="italic bare url"),
        pytest.param("www.x.y/a_b", "<http://www.x.y/a_b|www.x.y/a_b>", id="www url"),
        pytest.param("in <#C123|general>", "in <#C123|general>", id="slack channel kept"),
    ],
)
def test_markdown_links(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        pytest.param("ping <@U111>", f"ping {NO_PING}U111", id="user"),
        pytest.param("ping <@W333>", f"ping {NO_PING}W333", id="enterprise user"),
        pytest.param("ping <@U111|alice>", f"ping {NO_PING}alice", id="user with label"),
        pytest.param("<!channel> hi", f"{NO_PING}channel hi", id="channel"),
        pytest.param("<!here> hi", f"{NO_PING}here hi", id="here"),
        pytest.param("<!everyone> hi", f"{NO_PING}everyone hi", id="everyone"),
        pytest.param("<!here|@here> hi", f"{NO_PING}here hi", id="broadcast with label"),
        pytest.param("<!subteam^S123|@design> look", f"{NO_PING}design look", id="user group"),
        pytest.param("<!subteam^S123> look", f"{NO_PING}S123 look", id="group without label"),
        pytest.param("@here and @channel", f"{NO_PING}here and {NO_PING}channel", id="bare"),
        pytest.param("**<@U111>**", f"*{NO_PING}U111*", id="inside bold"),
        pytest.param("mail a@here.com", "mail a@here.com", id="not a broadcast"),
        pytest.param("`<!channel> @here`", "`&lt;!channel&gt; @here`", id="code kept as text"),
        pytest.param("[<@U111>](https://x.y)", "<https://x.y|@U111>", id="link label"),
        pytest.param(
            "<!date^1392734382^{date}|Feb 18>",
            "&lt;!date^1392734382^{date}|Feb 18&gt;",
            id="other commands shown as text",
        ),
    ],
)
def test_the_models_mentions_ping_nobody(markdown: str, mrkdwn: str) -> None:
    """`<@U…>`, user groups and broadcasts the model writes are shown, not sent as pings."""
    assert markdown_to_mrkdwn(markdown) == mrkdwn
    assert "<@" not in mrkdwn and "<!" not in mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        pytest.param("a < b > c & d", "a &lt; b &gt; c &amp; d", id="control characters"),
        pytest.param("<br> <div>", "&lt;br&gt; &lt;div&gt;", id="html is shown as text"),
        pytest.param("&amp;", "&amp;amp;", id="entity shown literally"),
        pytest.param("`a < b && c`", "`a &lt; b &amp;&amp; c`", id="escaped inside code"),
        pytest.param("`**x** _y_ [l](u)`", "`**x** _y_ [l](u)`", id="code untouched"),
        pytest.param("use `snake_case` and **bold**", "use `snake_case` and *bold*", id="mixed"),
        pytest.param("``a ` b``", "``a ` b``", id="double backtick code"),
        pytest.param("```one line```", "```one line```", id="triple backtick inline"),
        pytest.param("unmatched ` **b**", "unmatched ` *b*", id="lone backtick"),
        pytest.param("**`code`**", "*`code`*", id="bold code"),
        pytest.param("a\ue000b\ue002c", "abc", id="internal characters dropped"),
    ],
)
def test_markdown_escaping_and_code_spans(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn
