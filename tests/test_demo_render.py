"""The demo's renderer (tests/demo_render.py) as tables, and the demo itself in a real
headless Chromium: `python -m tests.demo --html` draws threads that look like Slack.

`SCREENSHOTS=docs/img` keeps the browser's picture (demo.png) for the README.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import BROWSER_MISSING, chromium_binary, headless_page
from tests.demo import demo
from tests.demo_render import (
    Button,
    Demo,
    Markup,
    Message,
    Task,
    TaskStatus,
    Thread,
    body_html,
    clock,
    initials,
    inline_html,
    message_lines,
    render_html,
    render_text,
)

NAMES = {"UALICE": "Alice", "C0001": "general"}
M, MD = Markup.MRKDWN, Markup.MARKDOWN


@pytest.mark.parametrize(
    ("text", "markup", "html"),
    [
        ("*Deploying* now", M, "<b>Deploying</b> now"),
        ("**Deploying** now", MD, "<b>Deploying</b> now"),
        ("**Deploying** now", M, "**Deploying** now"),  # not bold in mrkdwn: what Slack shows
        ("_soon_ ~never~", M, "<i>soon</i> <s>never</s>"),
        ("_soon_ ~~never~~ *maybe*", MD, "<i>soon</i> <s>never</s> <i>maybe</i>"),
        ("run `make <x>`", MD, "run <code>make &lt;x&gt;</code>"),
        ("run `a &lt; b`", M, "run <code>a &lt; b</code>"),  # mrkdwn arrives escaped once
        (
            "<https://x.io/a?b=1&amp;c=2|the docs>",
            M,
            '<a href="https://x.io/a?b=1&amp;c=2">the docs</a>',
        ),
        ("[the docs](https://x.io)", MD, '<a href="https://x.io">the docs</a>'),
        ("<https://x.io>", MD, '<a href="https://x.io">https://x.io</a>'),
        ("<javascript:alert(1)|click>", M, "click"),  # never a live link
        ("[click](javascript:void)", MD, "click"),  # nor here
        (
            "hi <@UALICE> in <#C0001>",
            M,
            'hi <span class="mention">@Alice</span> in <span class="mention">#general</span>',
        ),
        (
            "<@UNKNOWN> <!here>",
            M,
            '<span class="mention">@UNKNOWN</span> <span class="mention">@here</span>',
        ),
        ("<script>alert(1)</script>", MD, "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("snake_case_name and 2*3*4", M, "snake_case_name and 2*3*4"),
    ],
)
def test_inline_markup_as_slack_draws_it(text: str, markup: Markup, html: str) -> None:
    assert inline_html(text, markup, NAMES) == html


@pytest.mark.parametrize(
    ("text", "markup", "html"),
    [
        ("1. Merge\n2. Wait", MD, "<ol><li>Merge</li><li>Wait</li></ol>"),
        ("• one\n• two", M, "<ul><li>one</li><li>two</li></ul>"),
        ("a\n\nb", MD, '<div>a</div><div class="gap"></div><div>b</div>'),
        (
            'see ```{\n  "a": 1\n}``` ok',
            M,
            "<div>see </div><pre>{\n  &quot;a&quot;: 1\n}</pre><div> ok</div>",
        ),
        ("```\nx < y\n```", MD, "<pre>x &lt; y</pre>"),
        ("&gt; quoted", M, "<blockquote>quoted</blockquote>"),
        ("## Steps", MD, '<div class="heading">Steps</div>'),
    ],
)
def test_blocks_of_a_message(text: str, markup: Markup, html: str) -> None:
    assert body_html(text, markup, NAMES) == html


@pytest.mark.parametrize(
    ("name", "letters"), [("Alice", "A"), ("Ada Lovelace", "AL"), ("bob.smith", "BS"), ("", "?")]
)
def test_avatar_initials(name: str, letters: str) -> None:
    assert initials(name) == letters


@pytest.mark.parametrize(("ts", "shown"), [("1700000000.000100", "22:13"), ("nope", "")])
def test_the_time_beside_the_name(ts: str, shown: str) -> None:
    assert clock(ts) == shown


ANSWER = Message(
    author="Assistant",
    ts="1700000000.000200",
    text="**Deploying** takes `3` steps",
    markup=MD,
    is_bot=True,
    buttons=(Button("Allow", "primary"), Button("Deny", "danger")),
    context=("Allowed by <@UALICE>",),
    tasks=(Task("lookup_order (orders)", (TaskStatus.IN_PROGRESS, TaskStatus.COMPLETE)),),
    steps=('startStream "**Deploying**"', '+" takes"', "stopStream + buttons"),
)


def test_the_transcript_says_how_an_answer_arrived() -> None:
    assert message_lines(ANSWER) == [
        "Assistant [markdown]: **Deploying** takes `3` steps",
        "   ✓ lookup_order (orders) (in_progress → complete)",
        "   Allowed by <@UALICE>",
        "   [Allow] [Deny]",
        '   arrived as: startStream "**Deploying**", +" takes", stopStream + buttons',
    ]


def test_the_page_draws_buttons_tasks_prompts_and_escapes_names() -> None:
    asked = Message(author="<Eve>", ts="1700000000.000100", text="hi")
    thread = Thread(title="#general", messages=(asked, ANSWER), prompts=("Explain <this>",))
    page = render_html(Demo(heading="demo", threads=(thread,), names=NAMES))
    assert '<span class="button primary">Allow</span>' in page
    assert '<span class="button danger">Deny</span>' in page
    assert '<div class="task complete"><span class="mark">✓</span>lookup_order (orders)' in page
    assert '<span class="prompt">Explain &lt;this&gt;</span>' in page
    assert "&lt;Eve&gt;" in page and "<Eve>" not in page
    assert "<b>Deploying</b>" in page and "1 reply" in page
    assert "<script" not in page and "http" not in page.split("<main>")[0]


# The whole demo ----------------------------------------------------------------------------

BROWSER = chromium_binary()


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason=BROWSER_MISSING)
async def test_the_demo_draws_slack_threads_in_a_real_browser(tmp_path: Path) -> None:
    assert BROWSER is not None
    shown = await demo("responses", "stream", model_s=1.0)  # still streamed in pieces
    transcript = render_text(shown)
    out = tmp_path / "demo.html"
    out.write_text(render_html(shown), encoding="utf-8")
    # The transcript shows what the bot really posts: Markdown, streamed in pieces.
    assert "Assistant [markdown]: **Deploying** takes three steps:" in transcript
    assert 'arrived as: startStream "**Dep' in transcript  # first words, then more
    assert "✓ lookup_order (orders) (in_progress → complete)" in transcript
    assert "[Allow] [Deny]" in transcript and "Allowed by <@UALICE>" in transcript
    assert "suggested prompts: [Summarise this channel's recent discussion]" in transcript
    async with headless_page(BROWSER) as page:
        await page.open(out.as_uri())
        text = await page.text()
        bold = await page.evaluate("[...document.querySelectorAll('b')].map(b => b.innerText)")
        buttons = await page.evaluate(
            "[...document.querySelectorAll('.button')].map(b => b.innerText)"
        )
        avatars = await page.evaluate(
            "[...document.querySelectorAll('.avatar')].map(a => a.innerText)"
        )
        mentions = await page.evaluate(
            "[...document.querySelectorAll('.text .mention')].map(m => m.innerText)"
        )
        prompts = await page.evaluate(
            "[...document.querySelectorAll('.prompt')].map(p => p.innerText)"
        )
        await page.screenshot(
            Path(os.environ.get("SCREENSHOTS") or tmp_path) / "demo.png", width=1200
        )
    assert "Deploying" in bold and "**" not in text.split("Deploying")[0][-3:]
    assert {"Allow", "Deny", "👍", "👎"} <= set(buttons)
    assert {"A", "B"} <= set(avatars)
    assert "Help me write a clear message" in prompts
    assert "@Alice" in mentions and "@Assistant" in mentions
    assert "lookup_order (orders)" in text


@pytest.mark.slow
async def test_the_demo_runs_on_the_chat_backend_with_polled_delivery() -> None:
    """Every backend plays the same scenes; polled answers are mrkdwn, edited in place."""
    transcript = render_text(await demo("chat", "poll", model_s=0.2))
    assert "Assistant [mrkdwn]: *Deploying* takes three steps:" in transcript
    assert "arrived as: postMessage" in transcript and "update" in transcript
    assert "Order A-17: shipped on 3 May" in transcript
    assert "[Allow] [Deny]" in transcript
    assert "Order A-17 refunded" in transcript
