"""The demo's Slack threads as text and as a Slack-like HTML page (pure: data in, text out).

`tests/demo.py` plays the conversations and reads them off the fake Slack into these plain
records; everything here only formats them, so it is tested as tables
(tests/test_demo_render.py) and by a headless browser.

Slack shows two markups: *mrkdwn* (`*bold*`, `<url|label>`; what chat.postMessage's `text`
and blocks carry) and *Markdown* (`**bold**`, `[label](url)`; what a streamed message's
`markdown_text` carries). Each message says which it is, and is drawn accordingly.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from html import escape, unescape

BOT_NAME = "Assistant"


class Markup(StrEnum):
    MRKDWN = "mrkdwn"
    MARKDOWN = "markdown"


class TaskStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"
    ERROR = "error"


@dataclass(frozen=True)
class Button:
    text: str
    style: str | None = None  # "primary", "danger" or None, as in Block Kit


@dataclass(frozen=True)
class Task:
    """A tool call shown in a streamed message's timeline, with each status it went through."""

    title: str
    statuses: tuple[TaskStatus, ...]


@dataclass(frozen=True)
class Message:
    author: str
    ts: str
    text: str
    markup: Markup = Markup.MRKDWN
    is_bot: bool = False
    buttons: tuple[Button, ...] = ()
    context: tuple[str, ...] = ()  # small grey lines under it (mrkdwn)
    tasks: tuple[Task, ...] = ()
    steps: tuple[str, ...] = ()  # how it arrived: "chat.startStream", "+ 'words'", …
    only_visible_to: str | None = None  # an ephemeral message's one reader


@dataclass(frozen=True)
class Thread:
    title: str  # "#general", "Messages with Assistant"
    messages: tuple[Message, ...]
    statuses: tuple[str, ...] = ()  # the "is thinking…" lines Slack showed while it worked
    prompts: tuple[str, ...] = ()  # suggested prompts under the greeting
    note: str = ""  # what the reader should notice


@dataclass(frozen=True)
class Demo:
    heading: str
    threads: tuple[Thread, ...]
    names: Mapping[str, str] = field(default_factory=dict)  # user/channel id → name


# Text ---------------------------------------------------------------------------------------


STATUS_MARKS = {
    TaskStatus.PENDING: "○",
    TaskStatus.IN_PROGRESS: "◔",
    TaskStatus.COMPLETE: "✓",
    TaskStatus.ERROR: "✗",
}


def render_text(demo: Demo) -> str:
    """The terminal transcript: each thread, each message with how it arrived."""
    parts = [f"{demo.heading}\n"]
    for thread in demo.threads:
        parts.append(thread_text(thread))
    return "\n".join(parts)


def thread_text(thread: Thread) -> str:
    lines = [f"# {thread.title}" + (f": {thread.note}" if thread.note else ""), ""]
    for message in thread.messages:
        lines.extend(message_lines(message))
    if thread.prompts:
        lines.append("   suggested prompts: " + " | ".join(f"[{p}]" for p in thread.prompts))
    if thread.statuses:
        lines.append("   status shown while working: " + " → ".join(thread.statuses))
    lines.append("")
    return "\n".join(lines)


def message_lines(message: Message) -> list[str]:
    who = f"{message.author} [{message.markup}]" if message.is_bot else message.author
    if message.only_visible_to:
        who += f" (only {message.only_visible_to} sees this)"
    prefix = f"{who}: "
    body = message.text.replace("\n", "\n" + " " * len(prefix))
    lines = [prefix + body]
    indent = " " * 3
    lines.extend(
        f"{indent}{STATUS_MARKS[task.statuses[-1]]} {task.title} ("
        + " → ".join(task.statuses)
        + ")"
        for task in message.tasks
    )
    lines.extend(f"{indent}{line}" for line in message.context)
    if message.buttons:
        lines.append(indent + " ".join(f"[{b.text}]" for b in message.buttons))
    if message.steps:
        lines.append(f"{indent}arrived as: " + ", ".join(message.steps))
    return lines


# HTML ---------------------------------------------------------------------------------------

_MRKDWN_SPANS = re.compile(
    r"`(?P<code>[^`\n]+)`"
    r"|<(?P<target>[^>|\n]+)(?:\|(?P<label>[^>\n]+))?>"
    r"|(?<![\w*])\*(?P<bold>[^*\n]+)\*(?![\w*])"
    r"|(?<!\w)_(?P<italic>[^_\n]+)_(?!\w)"
    r"|(?<!\w)~(?P<strike>[^~\n]+)~(?!\w)"
)
_MARKDOWN_SPANS = re.compile(
    r"`(?P<code>[^`\n]+)`"
    r"|\[(?P<label>[^\]\n]+)\]\((?P<target>[^)\s]+)\)"
    r"|<(?P<auto>https?://[^>\s]+)>"
    r"|\*\*(?P<bold>.+?)\*\*"
    r"|(?<!\w)__(?P<bold2>.+?)__(?!\w)"
    r"|(?<![\w*])\*(?P<italic>[^*\n]+)\*(?![\w*])"
    r"|(?<!\w)_(?P<italic2>[^_\n]+)_(?!\w)"
    r"|~~(?P<strike>.+?)~~"
)
_SAFE_URL = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)


def inline_html(text: str, markup: Markup, names: Mapping[str, str]) -> str:
    """One line of mrkdwn or Markdown as HTML: bold, italic, strike, code, links, mentions."""
    pattern = _MRKDWN_SPANS if markup is Markup.MRKDWN else _MARKDOWN_SPANS
    out: list[str] = []
    position = 0
    for found in pattern.finditer(text):
        out.append(_plain(text[position : found.start()], markup))
        out.append(_span(found, markup, names))
        position = found.end()
    out.append(_plain(text[position:], markup))
    return "".join(out)


def _plain(text: str, markup: Markup) -> str:
    # mrkdwn arrives with &amp; &lt; &gt; already escaped: undo that once, escape once.
    return escape(unescape(text) if markup is Markup.MRKDWN else text)


def _span(found: re.Match[str], markup: Markup, names: Mapping[str, str]) -> str:
    group = found.groupdict()
    if group.get("code") is not None:
        return f"<code>{_plain(group['code'], markup)}</code>"
    for name, tag in (("bold", "b"), ("bold2", "b"), ("italic", "i"), ("italic2", "i")):
        if group.get(name) is not None:
            return f"<{tag}>{inline_html(group[name], markup, names)}</{tag}>"
    if group.get("strike") is not None:
        return f"<s>{inline_html(group['strike'], markup, names)}</s>"
    if group.get("auto") is not None:
        return _link(group["auto"], group["auto"], markup, names)
    return _link(group["target"], group.get("label"), markup, names)


def _link(target: str, label: str | None, markup: Markup, names: Mapping[str, str]) -> str:
    if markup is Markup.MRKDWN and target[:1] in "@#!":
        return _mention(target, label, names)
    shown = inline_html(label, markup, names) if label else _plain(target, markup)
    url = unescape(target) if markup is Markup.MRKDWN else target
    if not _SAFE_URL.match(url):
        return shown
    return f'<a href="{escape(url)}">{shown}</a>'


def _mention(target: str, label: str | None, names: Mapping[str, str]) -> str:
    kind, ident = target[0], target[1:]
    if kind == "!":
        return f'<span class="mention">@{escape(ident.split("^")[0])}</span>'
    name = label or names.get(ident, ident)
    sign = "@" if kind == "@" else "#"
    return f'<span class="mention">{sign}{escape(name)}</span>'


_BULLET = re.compile(r"^\s*(?:[-*•◦▪]) +(?P<item>.*)$")
_NUMBERED = re.compile(r"^\s*(?P<number>\d+)[.)] +(?P<item>.*)$")
_HEADING = re.compile(r"^#{1,6} +(?P<text>.*)$")


_FENCE = re.compile(r"```\n?(?P<code>.*?)\n?```", re.DOTALL)


def body_html(text: str, markup: Markup, names: Mapping[str, str]) -> str:
    """A message's text as HTML blocks: paragraphs, lists, quotes, code blocks (a fence may
    open and close mid-line, as mrkdwn allows)."""
    out: list[str] = []
    position = 0
    for fence in _FENCE.finditer(text):
        out.append(_lines_html(text[position : fence.start()], markup, names))
        out.append(f"<pre>{_plain(fence['code'], markup)}</pre>")
        position = fence.end()
    out.append(_lines_html(text[position:], markup, names))
    return "".join(out)


def _lines_html(text: str, markup: Markup, names: Mapping[str, str]) -> str:
    if not text.strip("\n"):
        return ""
    out: list[str] = []
    lines = text.strip("\n").split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        for kind, pattern in (("ul", _BULLET), ("ol", _NUMBERED)):
            if pattern.match(line):
                items: list[str] = []
                while index < len(lines) and (found := pattern.match(lines[index])):
                    items.append(f"<li>{inline_html(found['item'], markup, names)}</li>")
                    index += 1
                out.append(f"<{kind}>{''.join(items)}</{kind}>")
                break
        else:
            out.append(_line_html(line, markup, names))
            index += 1
    return "".join(out)


def _line_html(line: str, markup: Markup, names: Mapping[str, str]) -> str:
    if not line.strip():
        return '<div class="gap"></div>'
    quote = line.startswith("&gt; ") if markup is Markup.MRKDWN else line.startswith("> ")
    if quote:
        rest = line.split(" ", 1)[1]
        return f"<blockquote>{inline_html(rest, markup, names)}</blockquote>"
    heading = _HEADING.match(line) if markup is Markup.MARKDOWN else None
    if heading:
        return f'<div class="heading">{inline_html(heading["text"], markup, names)}</div>'
    return f"<div>{inline_html(line, markup, names)}</div>"


AVATAR_COLOURS = ("#4a154b", "#1264a3", "#2eb67d", "#e01e5a", "#ecb22e", "#36c5f0", "#7c3085")


def initials(name: str) -> str:
    """Up to two letters for an avatar: "Ada Lovelace" → "AL", "bob" → "B"."""
    words = [w for w in re.split(r"[\s._-]+", name) if w]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def avatar_colour(name: str) -> str:
    """The same person gets the same colour on every run."""
    return AVATAR_COLOURS[zlib.crc32(name.encode()) % len(AVATAR_COLOURS)]


def clock(ts: str) -> str:
    """A Slack ts (epoch seconds) as the time Slack shows beside the name (UTC)."""
    try:
        moment = datetime.fromtimestamp(float(ts), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return ""
    return moment.strftime("%H:%M")


def message_html(message: Message, names: Mapping[str, str]) -> str:
    author = escape(message.author)
    badge = '<span class="app">APP</span>' if message.is_bot else ""
    only = (
        f'<div class="only">Only visible to {escape(message.only_visible_to)}</div>'
        if message.only_visible_to
        else ""
    )
    tasks = "".join(_task_html(task) for task in message.tasks)
    body = body_html(message.text, message.markup, names) if message.text else ""
    context = "".join(
        f'<div class="context">{inline_html(line, Markup.MRKDWN, names)}</div>'
        for line in message.context
    )
    buttons = "".join(
        f'<span class="button {escape(b.style or "")}">{escape(b.text)}</span>'
        for b in message.buttons
    )
    steps = (
        '<div class="steps">arrived as: ' + escape(", ".join(message.steps)) + "</div>"
        if message.steps
        else ""
    )
    return (
        f'<div class="message{" ephemeral" if message.only_visible_to else ""}">'
        f'<div class="avatar" style="background:{avatar_colour(message.author)}">'
        f"{escape(initials(message.author))}</div>"
        f'<div class="content">{only}<div class="meta"><span class="name">{author}</span>'
        f'{badge}<span class="time">{clock(message.ts)}</span>'
        f'<span class="markup">{message.markup}</span></div>'
        f'{tasks}<div class="text">{body}</div>{context}'
        f"{f'<div class=buttons>{buttons}</div>' if buttons else ''}{steps}</div></div>"
    )


def _task_html(task: Task) -> str:
    status = task.statuses[-1]
    return (
        f'<div class="task {status}"><span class="mark">{STATUS_MARKS[status]}</span>'
        f"{escape(task.title)}"
        f'<span class="history">{escape(" → ".join(task.statuses))}</span></div>'
    )


def thread_html(thread: Thread, names: Mapping[str, str]) -> str:
    first, *replies = thread.messages
    count = f"{len(replies)} repl{'y' if len(replies) == 1 else 'ies'}"
    divider = f'<div class="divider"><span>{count}</span></div>' if replies else ""
    prompts = "".join(f'<span class="prompt">{escape(p)}</span>' for p in thread.prompts)
    statuses = "".join(
        f'<div class="status">While it worked, Slack showed “{escape(BOT_NAME)} {escape(s)}”</div>'
        for s in thread.statuses
    )
    note = f'<div class="note">{escape(thread.note)}</div>' if thread.note else ""
    return (
        f'<section class="thread"><header><b>Thread</b> <span>{escape(thread.title)}</span>'
        f"</header>{note}{message_html(first, names)}"
        f"{f'<div class=prompts>{prompts}</div>' if prompts else ''}{divider}"
        + "".join(message_html(m, names) for m in replies)
        + f"{statuses}</section>"
    )


def render_html(demo: Demo) -> str:
    """A self-contained page (inline CSS, no scripts) drawing each thread as Slack does."""
    threads = "".join(thread_html(t, demo.names) for t in demo.threads)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(demo.heading)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(demo.heading)}</h1><main>{threads}</main></body></html>\n"
    )


_CSS = """
body { margin: 0; padding: 16px 24px; background: #f4ede4; color: #1d1c1d;
  font: 15px/1.46668 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
h1 { font-size: 18px; margin: 4px 0 14px; color: #4a154b; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
  gap: 16px; align-items: start; }
.thread { background: #fff; border: 1px solid #dddddd; border-radius: 8px;
  padding-bottom: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.thread header { padding: 10px 16px; border-bottom: 1px solid #e8e8e8; font-size: 16px; }
.thread header span { color: #616061; font-size: 13px; margin-left: 4px; }
.note { padding: 6px 16px 0; color: #616061; font-size: 12px; font-style: italic; }
.message { display: flex; gap: 8px; padding: 8px 16px; }
.message:hover { background: #f8f8f8; }
.ephemeral { background: #f8f8f8; }
.avatar { flex: none; width: 36px; height: 36px; border-radius: 6px; color: #fff;
  font-weight: 700; font-size: 14px; display: flex; align-items: center;
  justify-content: center; }
.content { min-width: 0; flex: 1; }
.meta { display: flex; align-items: baseline; gap: 6px; }
.name { font-weight: 900; }
.app { background: #e8e8e8; color: #616061; font-size: 10px; font-weight: 700;
  padding: 1px 3px; border-radius: 2px; }
.time, .markup { color: #616061; font-size: 12px; }
.markup { margin-left: auto; font-family: Menlo, Consolas, monospace; font-size: 10px;
  color: #9a999a; }
.only { color: #616061; font-size: 12px; }
.text div { min-height: 1em; }
.text .gap { height: 6px; }
.text ul, .text ol { margin: 2px 0; padding-left: 24px; }
.heading { font-weight: 700; }
code { font: 12px Menlo, Consolas, monospace; color: #c01343; background: #f7f7f9;
  border: 1px solid #e2e2e5; border-radius: 3px; padding: 1px 3px; }
pre { font: 12px Menlo, Consolas, monospace; background: #f7f7f9; border: 1px solid #e2e2e5;
  border-radius: 4px; padding: 8px; white-space: pre-wrap; margin: 4px 0; }
blockquote { margin: 2px 0; padding-left: 10px; border-left: 4px solid #dddddd; }
a { color: #1264a3; text-decoration: none; }
.mention { color: #1264a3; background: #e8f5fa; border-radius: 3px; padding: 0 2px; }
.context { color: #616061; font-size: 12px; margin-top: 4px; }
.buttons { display: flex; gap: 8px; margin-top: 8px; flex-wrap: wrap; }
.button { border: 1px solid #bbbabb; border-radius: 4px; padding: 3px 10px;
  font-size: 13px; font-weight: 700; background: #fff; }
.button.primary { background: #007a5a; border-color: #007a5a; color: #fff; }
.button.danger { background: #e01e5a; border-color: #e01e5a; color: #fff; }
.task { display: flex; gap: 8px; align-items: baseline; font-size: 13px; margin: 2px 0 6px;
  padding: 4px 8px; border: 1px solid #e8e8e8; border-radius: 6px; background: #fafafa; }
.task .mark { font-weight: 700; }
.task.complete .mark { color: #007a5a; }
.task.error .mark { color: #e01e5a; }
.task .history { margin-left: auto; color: #9a999a; font-size: 11px; }
.steps { color: #9a999a; font-size: 11px; margin-top: 4px; }
.prompts { display: flex; flex-wrap: wrap; gap: 6px; padding: 0 16px 8px 60px; }
.prompt { border: 1px solid #d0d0d0; border-radius: 14px; padding: 2px 10px; font-size: 13px;
  color: #1264a3; background: #fff; }
.divider { display: flex; align-items: center; gap: 8px; margin: 2px 16px; color: #616061;
  font-size: 13px; }
.divider::after { content: ""; flex: 1; border-top: 1px solid #e8e8e8; }
.status { padding: 2px 16px 0 60px; color: #616061; font-size: 12px; font-style: italic; }
"""
