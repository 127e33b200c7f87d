"""Specification of the pure text transformations in bot.text."""

from __future__ import annotations

import random
import re

import pytest

from bot.mentions import name_mentions, split_unfinished, unlabelled_mentions
from bot.text import (
    NO_PING,
    build_turn_input,
    markdown_to_mrkdwn,
    mentioned_user_ids,
    slack_to_plain,
    split_message,
    strip_citation_markers,
    unping_markdown,
)
from tests.harness import BotUnderTest

USER_NAMES = {"U111": "Alice", "U222": "Bob Smith", "W333": "Enterprise Eve"}
BOT = "UBOT"


# ---------------------------------------------------------------------------
# slack_to_plain
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slack", "plain"),
    [
        pytest.param("hello there", "hello there", id="plain text unchanged"),
        pytest.param("<@U111> hi", "@Alice hi", id="known user"),
        pytest.param("ask <@W333>", "ask @Enterprise Eve", id="enterprise user"),
        pytest.param("ask <@U999>", "ask @U999", id="unknown user keeps id"),
        pytest.param("<@U999|carol> hi", "@carol hi", id="user with label"),
        pytest.param("in <#C123|general>", "in #general", id="channel with name"),
        pytest.param("in <#C123>", "in #C123", id="channel without name"),
        pytest.param("<!here> look", "@here look", id="here"),
        pytest.param("<!channel> look", "@channel look", id="channel broadcast"),
        pytest.param("<!everyone> look", "@everyone look", id="everyone"),
        pytest.param("<!here|@here> look", "@here look", id="broadcast with label"),
        pytest.param("<!subteam^S123|@team> ping", "@team ping", id="user group"),
        pytest.param("<!subteam^S123> ping", "@S123 ping", id="user group without label"),
        pytest.param(
            "due <!date^1392734382^{date_short}|Feb 18, 2014>", "due Feb 18, 2014", id="date"
        ),
        pytest.param(
            "see <https://x.y/a|the docs>", "see the docs (https://x.y/a)", id="labelled link"
        ),
        pytest.param("see <https://x.y/a|https://x.y/a>", "see https://x.y/a", id="label is url"),
        pytest.param("see <https://x.y/a>", "see https://x.y/a", id="bare link"),
        pytest.param("see <http://x.y|x.y>", "see http://x.y", id="label is url sans scheme"),
        pytest.param("mail <mailto:a@b.c|a@b.c>", "mail a@b.c", id="mailto"),
        pytest.param("mail <mailto:a@b.c>", "mail a@b.c", id="mailto without label"),
        pytest.param(
            "mail <mailto:a@b.c|Alice>", "mail Alice (a@b.c)", id="mailto with other label"
        ),
        pytest.param("a &lt; b &gt; c &amp; d", "a < b > c & d", id="unescape entities"),
        pytest.param("&amp;lt;", "&lt;", id="ampersand unescaped last"),
        pytest.param("<https://x.y?a=1&amp;b=2>", "https://x.y?a=1&b=2", id="entities in link"),
        pytest.param("  padded \n", "padded", id="outer whitespace stripped"),
        pytest.param("<@U111> and <@U222>", "@Alice and @Bob Smith", id="several users"),
    ],
)
def test_slack_to_plain(slack: str, plain: str) -> None:
    assert slack_to_plain(slack, user_names=USER_NAMES, bot_user_id=BOT) == plain


@pytest.mark.parametrize(
    ("slack", "plain"),
    [
        pytest.param("<@UBOT> what is X?", "what is X?", id="leading mention"),
        pytest.param("<@UBOT>: what is X?", "what is X?", id="leading mention with colon"),
        pytest.param("<@UBOT>, what is X?", "what is X?", id="leading mention with comma"),
        pytest.param("<@UBOT|assistant> hi", "hi", id="labelled mention"),
        pytest.param("what is X? <@UBOT>", "what is X?", id="trailing mention"),
        pytest.param("hey <@UBOT> what is X", "hey what is X", id="mention mid sentence"),
        pytest.param("hey <@UBOT>, what is X", "hey, what is X", id="mention before comma"),
        pytest.param("thanks <@UBOT>!", "thanks!", id="mention before punctuation"),
        pytest.param("<@UBOT> <@UBOT> twice", "twice", id="repeated mention"),
        pytest.param("first\n<@UBOT> second", "first\nsecond", id="mention at line start"),
        pytest.param("<@UBOT> ask <@U111>", "ask @Alice", id="other mentions kept"),
        pytest.param("<@UBOT>", "", id="only the mention"),
    ],
)
def test_slack_to_plain_removes_bot_mention(slack: str, plain: str) -> None:
    assert slack_to_plain(slack, user_names=USER_NAMES, bot_user_id=BOT) == plain


def test_slack_to_plain_without_bot_id_keeps_every_mention() -> None:
    assert slack_to_plain("<@UBOT> hi", user_names={"UBOT": "Bot"}) == "@Bot hi"


@pytest.mark.parametrize(
    ("slack", "ids"),
    [
        pytest.param("no mentions", [], id="none"),
        pytest.param("<@U111> hi", ["U111"], id="one"),
        pytest.param("<@U222> <@W333> <@U111>", ["U222", "W333", "U111"], id="in order"),
        pytest.param("<@U111> <@U222> <@U111>", ["U111", "U222"], id="no duplicates"),
        pytest.param("<@U111|alice>", ["U111"], id="labelled"),
        pytest.param("<#C123> <!here> <!subteam^S1|@t>", [], id="not users"),
    ],
)
def test_mentioned_user_ids(slack: str, ids: list[str]) -> None:
    assert mentioned_user_ids(slack) == ids


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


# ---------------------------------------------------------------------------
# markdown_to_mrkdwn: blocks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        pytest.param("# Title", "*Title*", id="h1"),
        pytest.param("###### Small", "*Small*", id="h6"),
        pytest.param("## Title ##", "*Title*", id="closing hashes"),
        pytest.param("## **Bold** title", "*Bold title*", id="bold inside heading"),
        pytest.param("## The _real_ deal", "*The _real_ deal*", id="italic inside heading"),
        pytest.param("#hashtag", "#hashtag", id="hashtag is not a heading"),
        pytest.param("####### seven", "####### seven", id="seven hashes"),
        pytest.param("Intro\n## Part\ntext", "Intro\n*Part*\ntext", id="own line"),
        pytest.param("---", "───", id="rule dashes"),
        pytest.param("***", "───", id="rule stars"),
        pytest.param("_ _ _", "───", id="rule spaced underscores"),
        pytest.param("> quoted", "> quoted", id="blockquote"),
        pytest.param("> **bold** quote", "> *bold* quote", id="formatted blockquote"),
        pytest.param("> a\n>\n> b", "> a\n>\n> b", id="blockquote blank line"),
        pytest.param("> > nested", "> nested", id="nested blockquote flattened"),
        pytest.param("> - item", "> • item", id="list inside blockquote"),
        pytest.param("line one  \nline two", "line one\nline two", id="hard break spaces"),
        pytest.param("\n\ntext\n\n", "text", id="outer blank lines dropped"),
        pytest.param("para 1\n\npara 2", "para 1\n\npara 2", id="paragraphs kept"),
    ],
)
def test_markdown_blocks(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        pytest.param("- a\n- b", "• a\n• b", id="dash bullets"),
        pytest.param("* a\n* b", "• a\n• b", id="star bullets"),
        pytest.param("+ a\n+ b", "• a\n• b", id="plus bullets"),
        pytest.param(
            "- a\n  - b\n    - c\n      - d",
            "• a\n    ◦ b\n        ▪ c\n            • d",
            id="nesting by two spaces",
        ),
        pytest.param("- a\n    - b", "• a\n    ◦ b", id="nesting by four spaces"),
        pytest.param("- a\n\t- b", "• a\n    ◦ b", id="nesting by tab"),
        pytest.param("- a\n  - b\n- c", "• a\n    ◦ b\n• c", id="back to top level"),
        pytest.param("- a\n\n- b", "• a\n\n• b", id="loose list"),
        pytest.param("  - a\n  - b", "• a\n• b", id="indented list starts at top"),
        pytest.param(
            "- **Name**: text *here*", "• *Name*: text _here_", id="formatting in bullets"
        ),
        pytest.param("* *italic* item", "• _italic_ item", id="star bullet then italic"),
        pytest.param("- [ ] todo\n- [x] done", "• ☐ todo\n• ☑ done", id="task list"),
        pytest.param("1. one\n2. two", "1. one\n2. two", id="numbered"),
        pytest.param("1) one\n2) two", "1) one\n2) two", id="numbered with parenthesis"),
        pytest.param("1. one\n1. one again", "1. one\n1. one again", id="numbers kept as written"),
        pytest.param(
            "1. one\n   - sub **b**\n2. two",
            "1. one\n    ◦ sub *b*\n2. two",
            id="bullets inside numbered",
        ),
        pytest.param(
            "- a\n  1. first\n  2. second",
            "• a\n    1. first\n    2. second",
            id="numbered inside bullets",
        ),
        pytest.param("- a\n\ntext\n  - b", "• a\n\ntext\n• b", id="paragraph ends list"),
        pytest.param("-not a list", "-not a list", id="no space after dash"),
    ],
)
def test_markdown_lists(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        pytest.param(
            "```python\nx = a_b * c_d\n```", "```\nx = a_b * c_d\n```", id="language tag dropped"
        ),
        pytest.param(
            "```\n**not bold** [l](u) # no\n- no\n```",
            "```\n**not bold** [l](u) # no\n- no\n```",
            id="contents untouched",
        ),
        pytest.param("```\nif a < b && c:\n```", "```\nif a &lt; b &amp;&amp; c:\n```", id="esc"),
        pytest.param("~~~js\nlet x;\n~~~", "```\nlet x;\n```", id="tilde fence"),
        pytest.param("````\n```\n````", "```\n```\n```", id="longer fence contains fence"),
        pytest.param("```\n    indented\n```", "```\n    indented\n```", id="indentation kept"),
        pytest.param("```\nline\n\n\nline\n```", "```\nline\n\n\nline\n```", id="blank lines"),
        pytest.param("```\nunclosed", "```\nunclosed\n```", id="unclosed fence closed"),
        pytest.param(
            "- item\n  ```sh\n  ls -l\n  ```", "• item\n```\nls -l\n```", id="fence in list"
        ),
        pytest.param(
            "text **a**\n```\n**a**\n```\nmore **a**",
            "text *a*\n```\n**a**\n```\nmore *a*",
            id="surrounding text converted",
        ),
    ],
)
def test_markdown_code_blocks(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        pytest.param(
            "| Name | Qty |\n|---|---:|\n| apple | 1 |\n| kiwi fruit | 12 |",
            "```\n"
            "| Name       | Qty |\n"
            "|------------|-----|\n"
            "| apple      | 1   |\n"
            "| kiwi fruit | 12  |\n"
            "```",
            id="columns aligned",
        ),
        pytest.param(
            "Name | Qty\n--- | ---\na | 1",
            "```\n| Name | Qty |\n|------|-----|\n| a    | 1   |\n```",
            id="without outer pipes",
        ),
        pytest.param(
            "| **A** | `b` |\n|---|---|\n| [x](https://x.y) | a < b |",
            "```\n"
            "| A               | b     |\n"
            "|-----------------|-------|\n"
            "| x (https://x.y) | a &lt; b |\n"
            "```",
            id="cells as plain text, escaped after aligning",
        ),
        pytest.param(
            "| a \\| b | c |\n|---|---|\n| 1 |",
            "```\n| a | b | c |\n|-------|---|\n| 1     |   |\n```",
            id="escaped pipe and short row",
        ),
        pytest.param(
            "| 名前 | x |\n|---|---|\n| ab | y |",
            "```\n| 名前 | x |\n|------|---|\n| ab   | y |\n```",
            id="wide characters",
        ),
        pytest.param(
            "Intro:\n\n| a |\n|---|\n| 1 |\n\nAfter **b**",
            "Intro:\n\n```\n| a |\n|---|\n| 1 |\n```\n\nAfter *b*",
            id="table between paragraphs",
        ),
        pytest.param("a | b\nc | d", "a | b\nc | d", id="pipes without delimiter row"),
        pytest.param("a | b\n---", "a | b\n───", id="column count must match"),
    ],
)
def test_markdown_tables(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


def test_markdown_full_answer() -> None:
    markdown = (
        "## Summary\n"
        "\n"
        "Use `pip install x` and see [the docs](https://x.y/a_b).\n"
        "\n"
        "1. **Install** it\n"
        "2. Run *this*:\n"
        "\n"
        "```bash\n"
        "x --flag > out.txt\n"
        "```\n"
        "\n"
        "---\n"
        "> Note: 2*3*4 & snake_case stay"
    )
    assert markdown_to_mrkdwn(markdown) == (
        "*Summary*\n"
        "\n"
        "Use `pip install x` and see <https://x.y/a_b|the docs>.\n"
        "\n"
        "1. *Install* it\n"
        "2. Run _this_:\n"
        "\n"
        "```\n"
        "x --flag &gt; out.txt\n"
        "```\n"
        "\n"
        "───\n"
        "> Note: 2*3*4 &amp; snake_case stay"
    )


# ---------------------------------------------------------------------------
# split_message
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "chunks"),
    [
        pytest.param("", 100, [], id="empty"),
        pytest.param(" \n\n\t ", 100, [], id="whitespace only"),
        pytest.param("short", 100, ["short"], id="fits"),
        pytest.param("\n\nshort \n\n", 100, ["short"], id="outer blank lines trimmed"),
        pytest.param("x" * 20, 20, ["x" * 20], id="exactly the limit"),
        pytest.param(
            "first paragraph here\n\nsecond paragraph here",
            30,
            ["first paragraph here", "second paragraph here"],
            id="at paragraph break",
        ),
        pytest.param(
            "line one is here\nline two is here\n\nparagraph",
            36,
            ["line one is here\nline two is here", "paragraph"],
            id="paragraph break preferred over line break",
        ),
        pytest.param(
            "line one is here\nline two is here",
            24,
            ["line one is here", "line two is here"],
            id="at line break",
        ),
        pytest.param(
            "One sentence here. Another one follows here.",
            30,
            ["One sentence here.", "Another one follows here."],
            id="at sentence end",
        ),
        pytest.param(
            "many small words that go on and on",
            20,
            ["many small words", "that go on and on"],
            id="at word boundary",
        ),
        pytest.param("x" * 45, 20, ["x" * 20, "x" * 20, "x" * 5], id="overlong word is hard split"),
        pytest.param(
            "tiny\n" + "y" * 30,
            20,
            ["tiny", "y" * 20, "y" * 10],
            id="short break beats hard split",
        ),
        pytest.param(
            "see <https://x.y|a long label> ok",
            24,
            ["see <https://x.y|a long", "label> ok"],
            id="link token longer than a chunk is split at a space",
        ),
        pytest.param(
            "a <https://x.y|two words> b c",
            28,
            ["a <https://x.y|two words> b", "c"],
            id="no split inside link token",
        ),
        pytest.param(
            "  indented line\n  second indented",
            20,
            ["  indented line", "  second indented"],
            id="indentation kept",
        ),
    ],
)
def test_split_message(text: str, limit: int, chunks: list[str]) -> None:
    assert split_message(text, limit=limit) == chunks


def test_split_message_reopens_code_blocks() -> None:
    code = "\n".join(f"line {number}" for number in range(6))
    text = f"Intro.\n\n```\n{code}\n```\n\nOutro."
    assert split_message(text, limit=32) == [
        "Intro.\n\n```\nline 0\nline 1\n```",
        "```\nline 2\nline 3\nline 4\n```",
        "```\nline 5\n```\n\nOutro.",
    ]


def test_split_message_does_not_leave_an_empty_code_block() -> None:
    text = "Some text before the code.\n```\nprint(1)\n```"
    assert split_message(text, limit=30) == ["Some text before the code.", "```\nprint(1)\n```"]


def test_split_message_drops_the_language_tag_only_when_reopening() -> None:
    text = "```python\n" + "x = 1\n" * 6 + "```"
    chunks = split_message(text, limit=30)
    assert chunks[0].startswith("```python\n")
    assert all(chunk.startswith("```\n") for chunk in chunks[1:])


def test_split_message_at_default_slack_limit() -> None:
    text = "\n\n".join(f"Paragraph {number}. " + "word " * 150 for number in range(20))
    chunks = split_message(text)
    assert len(chunks) > 1
    assert all(len(chunk) <= 3900 for chunk in chunks)
    assert all(chunk.startswith("Paragraph") for chunk in chunks)


def test_split_message_rejects_tiny_limits() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_message("text", limit=5)


def _random_message(rng: random.Random) -> str:
    """A message mixing paragraphs, lists, links, code blocks and overlong words."""
    words = ["alpha", "beta", "gamma", "*bold*", "_it_", "<https://x.y|a link>", "word."]
    blocks = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.choice(["paragraph", "list", "code", "long"])
        if kind == "paragraph":
            blocks.append(" ".join(rng.choices(words, k=rng.randint(1, 60))))
        elif kind == "list":
            blocks.append("\n".join("• " + " ".join(rng.choices(words, k=5)) for _ in range(4)))
        elif kind == "code":
            lines = ["    " * rng.randint(0, 2) + f"code_{n} = {n}" for n in range(12)]
            blocks.append("```\n" + "\n".join(lines) + "\n```")
        else:
            blocks.append("z" * rng.randint(1, 300))
    return "\n\n".join(blocks)


def _content(text: str) -> str:
    """Non-whitespace content, ignoring code fences that splitting may add."""
    return re.sub(r"\s+", "", text.replace("```", ""))


def _fence_balance_ok(chunk: str) -> bool:
    return chunk.count("```") % 2 == 0


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("limit", [16, 40, 120, 500])
def test_split_message_properties(seed: int, limit: int) -> None:
    text = _random_message(random.Random(seed))
    chunks = split_message(text, limit=limit)
    assert chunks, "a non-empty message yields chunks"
    assert all(len(chunk) <= limit for chunk in chunks)
    assert all(chunk.strip() for chunk in chunks)
    assert all(_fence_balance_ok(chunk) for chunk in chunks)
    assert _content("\n".join(chunks)) == _content(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("`" * 40, id="backtick run"),
        pytest.param("a" + "`" * 25 + " b", id="backtick run after a letter"),
        pytest.param("```\n" + "`" * 30 + "\n```", id="backticks inside code"),
        pytest.param("x ```" + "y" * 40 + "``` z", id="inline triple backticks"),
        pytest.param("```python\n```", id="empty code block"),
        pytest.param("<" * 30 + ">" * 30, id="angle brackets"),
        pytest.param(" " * 40 + "x", id="leading spaces"),
    ],
)
def test_split_message_terminates_on_pathological_input(text: str) -> None:
    chunks = split_message(text, limit=16)
    assert all(0 < len(chunk) <= 16 and chunk.strip() for chunk in chunks)
    assert re.sub(r"[\s`]", "", "".join(chunks)) == re.sub(r"[\s`]", "", text)


def _random_markdown(rng: random.Random) -> str:
    pieces = [
        "## Heading **bold**",
        "Some *text* with `code_x` and [a link](https://x.y/a_b).",
        "- item one\n  - nested _item_",
        "1. first\n2. second",
        "```python\nprint('a < b')\nfor i in range(3):\n    pass\n```",
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "> quote & more",
        "---",
    ]
    return "\n\n".join(rng.choices(pieces, k=rng.randint(1, 25)))


@pytest.mark.parametrize("seed", range(20))
def test_converted_markdown_splits_into_well_formed_chunks(seed: int) -> None:
    mrkdwn = markdown_to_mrkdwn(_random_markdown(random.Random(seed)))
    chunks = split_message(mrkdwn, limit=80)
    assert all(len(chunk) <= 80 and _fence_balance_ok(chunk) for chunk in chunks)
    assert _content("\n".join(chunks)) == _content(mrkdwn)


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


# ---------------------------------------------------------------------------
# End to end: what the model writes reaches Slack without pinging anyone
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_an_answer_that_mentions_people_pings_nobody(bot: BotUnderTest) -> None:
    bot.openai.reply = lambda texts: "<!channel> hi <@UALICE>, ask <!subteam^S1|@design>"
    question = await bot.mention("announce it")
    (answer,) = await bot.wait_for_answers("C0001", question.ts)
    shown = [answer.text] + [
        block["text"]["text"] for block in answer.blocks or [] if block.get("type") == "section"
    ]
    for text in shown:
        assert text == f"{NO_PING}channel hi {NO_PING}Alice, ask {NO_PING}design"
        assert "<@" not in text and "<!" not in text


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
