"""Pure text transformations between Slack and the AI model.

Nothing here performs I/O: Slack markup is turned into plain text for the
model, the model's Markdown is turned into Slack mrkdwn, and long replies are
split into chunks that fit into one Slack message.
"""

from __future__ import annotations

import re
import string
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "NO_PING",
    "build_turn_input",
    "markdown_to_mrkdwn",
    "mentioned_user_ids",
    "slack_to_plain",
    "split_message",
    "strip_citation_markers",
    "unping_markdown",
]

FENCE = "```"
HORIZONTAL_RULE = "───"
DEFAULT_MESSAGE_LIMIT = 3900


def _escape(text: str) -> str:
    """Escapes the three characters Slack treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _unescape(text: str) -> str:
    """Reverses `_escape`; `&amp;` goes last so `&amp;lt;` becomes `&lt;`, not `<`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# ---------------------------------------------------------------------------
# Slack markup -> plain text
# ---------------------------------------------------------------------------

_SLACK_TOKEN = re.compile(r"<([^<>]+)>")
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")
_BROADCASTS = frozenset({"here", "channel", "everyone"})
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
_MID_LINE_FOLLOWER = re.compile(r"[.,:;!?)]")


def slack_to_plain(
    text: str, *, user_names: Mapping[str, str], bot_user_id: str | None = None
) -> str:
    """Turns a Slack message's markup into text the model can read."""
    if bot_user_id:
        text = _remove_mention(text, user_id=bot_user_id)

    def render(match: re.Match[str]) -> str:
        return _render_slack_token(match[1], user_names=user_names)

    return _unescape(_SLACK_TOKEN.sub(render, text)).strip()


def mentioned_user_ids(text: str) -> list[str]:
    """User ids mentioned in a Slack message, in order of first mention."""
    return list(dict.fromkeys(_USER_MENTION.findall(text)))


def _remove_mention(text: str, *, user_id: str) -> str:
    """Removes every mention of `user_id`, tidying the whitespace around it.

    Addressing the bot ("<@B>: do X", "<@B>, do X") loses its punctuation too;
    elsewhere the mention collapses into a single space, or into nothing when
    punctuation or a line end follows it.
    """
    mention = rf"<@{re.escape(user_id)}(?:\|[^<>]*)?>"
    at_line_start = re.compile(rf"^[ \t]*{mention}[ \t]*(?:[:,][ \t]*)?", re.MULTILINE)
    text = at_line_start.sub("", text)

    def tidy(match: re.Match[str]) -> str:
        following = match.string[match.end() : match.end() + 1]
        if not following or following == "\n" or _MID_LINE_FOLLOWER.match(following):
            return ""
        return " "

    return re.sub(rf"[ \t]*{mention}[ \t]*", tidy, text)


def _render_slack_token(body: str, *, user_names: Mapping[str, str]) -> str:
    target, _, label = body.partition("|")
    if target.startswith("@"):
        user_id = target[1:]
        return "@" + (label or user_names.get(user_id, user_id))
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!"):
        return _render_special(target[1:], label=label)
    return _render_link(target, label=label)


def _render_special(command: str, *, label: str) -> str:
    """Renders `<!here>`, `<!subteam^S1|@team>`, `<!date^…|fallback>` and friends."""
    keyword, _, argument = command.partition("^")
    if keyword in _BROADCASTS:
        return "@" + keyword
    if keyword == "subteam":
        name = label or argument
        return name if name.startswith("@") else "@" + name
    return label or keyword


def _render_link(url: str, *, label: str) -> str:
    if url.lower().startswith("mailto:"):
        address = url[len("mailto:") :]
        redundant = {"", address, url}
        return address if label in redundant else f"{label} ({address})"
    redundant = {"", url, _SCHEME.sub("", url)}
    return url if label in redundant else f"{label} ({url})"


# ---------------------------------------------------------------------------
# Citation markers and turn input
# ---------------------------------------------------------------------------

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


def build_turn_input(
    messages: Sequence[tuple[str, str]],
    *,
    history: Sequence[tuple[str, str]] = (),
    is_group: bool = False,
) -> str:
    """Builds the text the assistant receives for one turn of a conversation.

    `messages` and `history` are (author name, plain text) pairs. Authors are
    named whenever more than one person could be speaking; a one-to-one chat
    gets the bare text. Blank messages are left out.
    """
    new = [(author, text.strip()) for author, text in messages if text.strip()]
    earlier = [(author, text.strip()) for author, text in history if text.strip()]
    parts = []
    if earlier:
        parts.append("Earlier messages in this Slack thread:\n" + _attributed_lines(earlier))
    several_authors = len({author for author, _ in new}) > 1
    if earlier or is_group or several_authors:
        parts.append(_attributed_lines(new))
    else:
        parts.append("\n\n".join(text for _, text in new))
    return "\n\n".join(part for part in parts if part)


def _attributed_lines(messages: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{author}: {text}" for author, text in messages)


# ---------------------------------------------------------------------------
# Markdown -> Slack mrkdwn: inline content
# ---------------------------------------------------------------------------

# Private-use characters stand in for protected spans and emphasis while the
# emphasis patterns run, so that they never see the inside of code or URLs.
_SPAN_START, _SPAN_END = "\ue000", "\ue001"
_BOLD, _ITALIC, _STRIKE = "\ue002", "\ue003", "\ue004"
_INTERNAL_CHARS = str.maketrans(dict.fromkeys(_SPAN_START + _SPAN_END + _BOLD + _ITALIC + _STRIKE))
_SPAN_PLACEHOLDER = re.compile(f"{_SPAN_START}(\\d+){_SPAN_END}")

_URI_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*)>")
_EMAIL_AUTOLINK = re.compile(r"<([\w.!#$%&'*+/=?^`{|}~\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*)>")
_CHANNEL_LINK = re.compile(r"<#C[A-Z0-9]+(?:\|[^<>]*)?>")
# Slack's markup for notifying people: a user, a user group, or a broadcast to a channel.
_PING = re.compile(
    r"<(?:@(?P<user>[UW][A-Z0-9]+)|!subteam\^(?P<group>[A-Z0-9]+)|!(?P<broadcast>here|channel|everyone))"
    r"(?:\|(?P<label>[^<>]*))?>"
)
# A bare "@here" in a section block's mrkdwn may be parsed into a live broadcast (Slack parses
# "certain mentions" automatically unless `verbatim` is set); the joiner keeps it plain text.
_BARE_BROADCAST = re.compile(r"(?<![\w@])@(here|channel|everyone)\b")
NO_PING = "@\u2060"
"""How the model's mentions are shown: an "@" followed by an invisible word joiner, which no
Slack parser takes for a mention, so the name reads as usual but notifies nobody."""
_BARE_URL = re.compile(r"(?:https?://|www\.)[^\s<>`]+", re.IGNORECASE)
_URL_TRAILING_PUNCTUATION = ".,:;!?'\""
_EMPHASIS_CHARS = "*_~"
_ASCII_PUNCTUATION = frozenset(string.punctuation)


@dataclass(frozen=True)
class _Span:
    """A piece of inline Markdown that emphasis must not touch, pre-rendered."""

    mrkdwn: str
    plain: str


@dataclass(frozen=True)
class _Markers:
    bold: str
    italic: str
    strike: str


_SLACK_MARKERS = _Markers(bold="*", italic="_", strike="~")
_ALREADY_BOLD_MARKERS = _Markers(bold="", italic="_", strike="~")
_NO_MARKERS = _Markers(bold="", italic="", strike="")


def _emphasis_pattern(delimiter: str) -> re.Pattern[str]:
    """Matches `delimiter`-wrapped text whose delimiters flank a word.

    Unlike CommonMark, delimiters inside a word never count, so `2*3*4` and
    `snake_case_name` stay as they are (Slack would not render them either).
    """
    char = re.escape(delimiter[0])
    quoted = re.escape(delimiter)
    return re.compile(
        rf"(?<![\w{char}]){quoted}(?![\s{char}])(.+?)(?<![\s{char}]){quoted}(?![\w{char}])"
    )


_EMPHASIS_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (_emphasis_pattern("***"), _BOLD + _ITALIC + r"\1" + _ITALIC + _BOLD),
    (_emphasis_pattern("___"), _BOLD + _ITALIC + r"\1" + _ITALIC + _BOLD),
    (_emphasis_pattern("**"), _BOLD + r"\1" + _BOLD),
    (_emphasis_pattern("__"), _BOLD + r"\1" + _BOLD),
    (_emphasis_pattern("*"), _ITALIC + r"\1" + _ITALIC),
    (_emphasis_pattern("_"), _ITALIC + r"\1" + _ITALIC),
    (_emphasis_pattern("~~"), _STRIKE + r"\1" + _STRIKE),
)


def _inline_mrkdwn(text: str, *, markers: _Markers = _SLACK_MARKERS) -> str:
    """Converts one line of inline Markdown into escaped Slack mrkdwn."""
    protected, spans = _protect_spans(text)
    marked = _escape(_mark_emphasis(protected)).translate(_marker_table(markers))
    marked = _BARE_BROADCAST.sub(NO_PING + r"\1", marked)
    return _SPAN_PLACEHOLDER.sub(lambda match: spans[int(match[1])].mrkdwn, marked)


def _inline_plain(text: str) -> str:
    """Reduces inline Markdown to unescaped plain text (for labels and table cells)."""
    protected, spans = _protect_spans(text)
    marked = _mark_emphasis(protected).translate(_marker_table(_NO_MARKERS))
    return _SPAN_PLACEHOLDER.sub(lambda match: spans[int(match[1])].plain, marked)


def _marker_table(markers: _Markers) -> dict[int, str]:
    return {
        ord(_BOLD): markers.bold,
        ord(_ITALIC): markers.italic,
        ord(_STRIKE): markers.strike,
    }


def _mark_emphasis(text: str) -> str:
    for pattern, replacement in _EMPHASIS_RULES:
        text = pattern.sub(replacement, text)
    return text


def _protect_spans(text: str) -> tuple[str, list[_Span]]:
    """Replaces code, links, URLs and escapes with numbered placeholders."""
    spans: list[_Span] = []
    pieces: list[str] = []
    position = 0
    while position < len(text):
        parsed = _parse_span(text, position)
        if parsed is None:
            pieces.append(text[position])
            position += 1
            continue
        span, position = parsed
        pieces.append(f"{_SPAN_START}{len(spans)}{_SPAN_END}")
        spans.append(span)
    return "".join(pieces), spans


def _parse_span(text: str, start: int) -> tuple[_Span, int] | None:
    parser = _SPAN_PARSERS.get(text[start].lower())
    return parser(text, start) if parser else None


def _parse_backslash_escape(text: str, start: int) -> tuple[_Span, int] | None:
    escaped = text[start + 1 : start + 2]
    if escaped not in _ASCII_PUNCTUATION:
        return None
    return _Span(mrkdwn=_escape(escaped), plain=escaped), start + 2


def _parse_code_span(text: str, start: int) -> tuple[_Span, int]:
    """A code span is kept verbatim; an unmatched backtick run stays literal."""
    run_end = start
    while run_end < len(text) and text[run_end] == "`":
        run_end += 1
    opening = text[start:run_end]
    closing = re.compile(rf"(?<!`){opening}(?!`)").search(text, run_end)
    if closing is None:
        return _Span(mrkdwn=opening, plain=opening), run_end
    content = text[run_end : closing.start()]
    return _Span(mrkdwn=opening + _escape(content) + opening, plain=content), closing.end()


def _parse_angle_bracket(text: str, start: int) -> tuple[_Span, int] | None:
    if match := _CHANNEL_LINK.match(text, start):
        # A link to a channel notifies nobody, so the model's one stays live.
        return _Span(mrkdwn=match[0], plain=match[0]), match.end()
    if match := _PING.match(text, start):
        return _unpinged(match), match.end()
    if match := _URI_AUTOLINK.match(text, start):
        return _Span(mrkdwn=f"<{_slack_url(match[1])}>", plain=match[1]), match.end()
    if match := _EMAIL_AUTOLINK.match(text, start):
        address = _escape(match[1])
        return _Span(mrkdwn=f"<mailto:{address}|{address}>", plain=match[1]), match.end()
    return None


def unping_markdown(markdown: str) -> str:
    """The model's raw Markdown with its mentions and broadcasts made plain, for the places
    that send Markdown to Slack unconverted (a streamed preview's `markdown_text`)."""
    unpinged = _PING.sub(lambda match: NO_PING + _unpinged(match).plain[1:], markdown)
    return _BARE_BROADCAST.sub(NO_PING + r"\1", unpinged)


def _unpinged(match: re.Match[str]) -> _Span:
    """The model's `<@U…>`, `<!subteam^…>` or `<!channel>` as plain text: text the model
    writes must not notify people, whoever it names."""
    name = (
        (match["label"] or "").lstrip("@") or match["user"] or match["group"] or match["broadcast"]
    )
    return _Span(mrkdwn=NO_PING + _escape(name), plain="@" + name)


def _parse_image(text: str, start: int) -> tuple[_Span, int] | None:
    if not text.startswith("![", start):
        return None
    parsed = _parse_link_parts(text, start + 1)
    if parsed is None:
        return None
    alt, url, end = parsed
    label = _inline_plain(alt)
    # An image's alt text alone describes it, e.g. inside the label of a badge link.
    return _Span(mrkdwn=_link_span(url=url, label=label).mrkdwn, plain=label or url), end


def _parse_link(text: str, start: int) -> tuple[_Span, int] | None:
    parsed = _parse_link_parts(text, start)
    if parsed is None:
        return None
    label, url, end = parsed
    return _link_span(url=url, label=_inline_plain(label)), end


def _link_span(*, url: str, label: str) -> _Span:
    if not url:
        return _Span(mrkdwn=_escape(label), plain=label)
    if label in ("", url):
        return _Span(mrkdwn=f"<{_slack_url(url)}>", plain=url)
    return _Span(mrkdwn=f"<{_slack_url(url)}|{_escape(label)}>", plain=f"{label} ({url})")


def _parse_bare_url(text: str, start: int) -> tuple[_Span, int] | None:
    before = text[start - 1] if start > 0 else ""
    if before.isalnum() or before in ("/", ".", "-", "@"):
        return None
    match = _BARE_URL.match(text, start)
    if match is None:
        return None
    url = _trim_url_end(match[0], emphasis=before if before in _EMPHASIS_CHARS else "")
    if url.lower().startswith("www."):
        mrkdwn = f"<http://{_slack_url(url)}|{_escape(url)}>"
    else:
        mrkdwn = f"<{_slack_url(url)}>"
    return _Span(mrkdwn=mrkdwn, plain=url), start + len(url)


def _trim_url_end(url: str, *, emphasis: str) -> str:
    """Drops sentence punctuation and unbalanced closing parentheses after a URL.

    `emphasis` is the delimiter just before the URL, if any: in `**https://x**`
    the closing `**` belongs to the emphasis, not to the URL.
    """
    while True:
        trimmed = url.rstrip(_URL_TRAILING_PUNCTUATION + emphasis)
        while trimmed.endswith(")") and trimmed.count(")") > trimmed.count("("):
            trimmed = trimmed[:-1]
        if trimmed == url:
            return url
        url = trimmed


def _slack_url(url: str) -> str:
    """Makes a URL safe inside `<url|label>`, where `|`, `<` and `>` are syntax."""
    encoded = url.replace("|", "%7C").replace(" ", "%20").replace("<", "%3C").replace(">", "%3E")
    return encoded.replace("&", "&amp;")


_SPAN_PARSERS: dict[str, Callable[[str, int], tuple[_Span, int] | None]] = {
    "\\": _parse_backslash_escape,
    "`": _parse_code_span,
    "<": _parse_angle_bracket,
    "!": _parse_image,
    "[": _parse_link,
    "h": _parse_bare_url,
    "w": _parse_bare_url,
}


def _parse_link_parts(text: str, start: int) -> tuple[str, str, int] | None:
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


# ---------------------------------------------------------------------------
# Markdown -> Slack mrkdwn: blocks
# ---------------------------------------------------------------------------

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
    lines = markdown.translate(_INTERNAL_CHARS).replace("\r\n", "\n").split("\n")
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
        yield _escape(_dedent(lines[index], indent_width))
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
        return f"*{_inline_mrkdwn(text, markers=_ALREADY_BOLD_MARKERS)}*" if text else ""
    if _THEMATIC_BREAK.match(line):
        return HORIZONTAL_RULE
    if item := _BULLET_ITEM.match(line):
        depth = nesting.depth_of(item["indent"])
        symbol = _BULLET_SYMBOLS[depth % len(_BULLET_SYMBOLS)]
        return f"{_NESTING_INDENT * depth}{symbol} {_list_item_content(item['content'])}"
    if item := _ORDERED_ITEM.match(line):
        depth = nesting.depth_of(item["indent"])
        return f"{_NESTING_INDENT * depth}{item['number']} {_list_item_content(item['content'])}"
    return _inline_mrkdwn(line.rstrip())


def _is_list_item(line: str) -> bool:
    if _THEMATIC_BREAK.match(line):
        return False
    return bool(_BULLET_ITEM.match(line) or _ORDERED_ITEM.match(line))


def _list_item_content(content: str) -> str:
    """Converts an item's text, showing GitHub task boxes `[ ]`/`[x]` as ☐/☑."""
    if box := _TASK_BOX.match(content):
        symbol = "☐" if box["state"] == " " else "☑"
        return f"{symbol} {_inline_mrkdwn(content[box.end() :].rstrip())}"
    return _inline_mrkdwn(content.rstrip())


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
    yield from (_escape(line) for line in _aligned_table([_plain_cells(row) for row in rows]))
    yield FENCE
    return index


def _table_cells(row: str) -> list[str]:
    row = row.strip()
    row = row.removeprefix("|")
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [cell.strip().replace("\\|", "|") for cell in _UNESCAPED_PIPE.split(row)]


def _plain_cells(row: list[str]) -> list[str]:
    return [_inline_plain(cell) for cell in row]


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


# ---------------------------------------------------------------------------
# Splitting long messages
# ---------------------------------------------------------------------------

_MIN_SPLIT_LIMIT = 16
_REOPENING_FENCE = FENCE + "\n"
_CLOSING_FENCE = "\n" + FENCE
_LEADING_BLANK_LINES = re.compile(r"^(?:[ \t]*\n)+")
_BREAKS_BY_PREFERENCE = (
    re.compile(r"\n(?:[ \t]*\n)+"),  # paragraph break
    re.compile(r"\n"),  # line break
    re.compile(r"(?<=[.!?])[ \t]+"),  # sentence end
    re.compile(r"[ \t]+"),  # word boundary
)
_SLACK_ANGLE_TOKEN = re.compile(r"<[^<>\n]*>")


@dataclass(frozen=True)
class _Cut:
    """Where to split: the chunk is `rest[:end]`, the remainder `rest[resume:]`."""

    end: int
    resume: int


def split_message(text: str, *, limit: int = DEFAULT_MESSAGE_LIMIT) -> list[str]:
    """Splits a mrkdwn message into chunks of at most `limit` characters.

    A code block cut in two is closed at the end of one chunk and reopened at
    the start of the next, so both halves still render as code.
    """
    if limit < _MIN_SPLIT_LIMIT:
        raise ValueError(f"limit must be at least {_MIN_SPLIT_LIMIT}, got {limit}")
    chunks: list[str] = []
    rest = text
    in_code = False
    while True:
        rest = _LEADING_BLANK_LINES.sub("", rest)
        if in_code and rest.lstrip().startswith(FENCE):
            # The code block ends right here: the closing fence already added stands in.
            rest, in_code = rest.lstrip()[len(FENCE) :], False
            continue
        if not rest.strip():
            return chunks
        prefix = _REOPENING_FENCE if in_code else ""
        if len(prefix) + len(rest.rstrip()) <= limit:
            return [*chunks, prefix + rest.rstrip()]
        chunk, rest, in_code = _take_chunk(rest, prefix=prefix, limit=limit)
        if chunk.strip():
            chunks.append(chunk)


def _take_chunk(rest: str, *, prefix: str, limit: int) -> tuple[str, str, bool]:
    """Cuts one chunk off `rest`: (chunk, remainder, whether the cut is inside code)."""
    layout = _ChunkLayout(rest, starts_in_code=bool(prefix), budget=limit - len(prefix))
    cut = layout.best_cut()
    body = prefix + rest[: cut.end].rstrip()
    ends_in_code = layout.in_code_at(cut.end)
    if ends_in_code:
        body += _CLOSING_FENCE
    remainder = rest[cut.resume :]
    if "\n" not in rest[cut.end : cut.resume]:
        remainder = remainder.lstrip(" \t")  # a mid-line cut: drop the spaces between words
    return body, remainder, ends_in_code


def _unsplittable_tokens(text: str, *, budget: int) -> Iterator[tuple[int, int]]:
    """Spans of `<…>` tokens (links, mentions) near the cut that would fit in a chunk."""
    for match in _SLACK_ANGLE_TOKEN.finditer(text):
        if match.start() > budget:
            return
        if len(match[0]) <= budget:
            yield match.span()


class _ChunkLayout:
    """Knows where code fences and Slack `<…>` tokens lie in the text to be cut."""

    def __init__(self, rest: str, *, starts_in_code: bool, budget: int) -> None:
        self._rest = rest
        self._starts_in_code = starts_in_code
        self._budget = budget
        self._fence_ends = [match.end() for match in re.finditer(FENCE, rest)]
        self._tokens = list(_unsplittable_tokens(rest, budget=budget))

    def in_code_at(self, position: int) -> bool:
        fences_before = bisect_right(self._fence_ends, position)
        return (fences_before + self._starts_in_code) % 2 == 1

    def best_cut(self) -> _Cut:
        """Prefers the coarsest break that fills at least half the chunk, then any break."""
        for minimum_end in (self._budget // 2, 1):
            for pattern in _BREAKS_BY_PREFERENCE:
                cut = self._last_acceptable_cut(pattern, minimum_end=minimum_end)
                if cut is not None:
                    return cut
        return self._hard_cut()

    def _last_acceptable_cut(self, pattern: re.Pattern[str], *, minimum_end: int) -> _Cut | None:
        window = self._rest[: self._budget + 1]
        cuts = [_Cut(match.start(), match.end()) for match in pattern.finditer(window)]
        for cut in reversed(cuts):
            if cut.end < minimum_end:
                return None
            if self._is_acceptable(cut.end):
                return cut
        return None

    def _is_acceptable(self, end: int) -> bool:
        return (
            self._fits(end)
            and bool(self._rest[:end].strip())
            and not self._inside_token(end)
            and not self._ends_with_opening_fence(end)
        )

    def _inside_token(self, position: int) -> bool:
        return any(start < position < end for start, end in self._tokens)

    def _ends_with_opening_fence(self, end: int) -> bool:
        """A cut right after an opening fence would leave an empty code block."""
        last_line = self._rest[:end].rstrip().rpartition("\n")[2]
        return self.in_code_at(end) and last_line.lstrip().startswith(FENCE)

    def _hard_cut(self) -> _Cut:
        """Splits an overlong word, avoiding the middle of a backtick run."""
        for end in range(self._budget, 0, -1):
            if not self._splits_backtick_run(end) and self._fits(end):
                return _Cut(end, end)
        fallback = self._budget - len(_CLOSING_FENCE)  # a chunk of nothing but backticks
        return _Cut(fallback, fallback)

    def _splits_backtick_run(self, position: int) -> bool:
        return self._rest[position - 1] == "`" == self._rest[position : position + 1]

    def _fits(self, end: int) -> bool:
        closing_cost = len(_CLOSING_FENCE) if self.in_code_at(end) else 0
        return end + closing_cost <= self._budget
