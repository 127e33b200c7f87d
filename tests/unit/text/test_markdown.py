"""Specification of bot.text.markdown: Markdown blocks as Slack mrkdwn."""

from __future__ import annotations

import pytest

from bot.text.markdown import markdown_to_mrkdwn

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
