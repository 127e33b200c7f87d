"""Inline Markdown -> Slack mrkdwn (or plain text): emphasis, code spans, links and escapes."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from bot.escape import escape_mrkdwn
from bot.text.link_syntax import parse_link_parts
from bot.text.mentions import NO_PING, PING, pinged_name, unping_bare_broadcasts

# Private-use characters stand in for protected spans and emphasis while the
# emphasis patterns run, so that they never see the inside of code or URLs.
_SPAN_START, _SPAN_END = "\ue000", "\ue001"
_BOLD, _ITALIC, _STRIKE = "\ue002", "\ue003", "\ue004"
_PLACEHOLDER_CHARS = str.maketrans(
    dict.fromkeys(_SPAN_START + _SPAN_END + _BOLD + _ITALIC + _STRIKE)
)
_SPAN_PLACEHOLDER = re.compile(f"{_SPAN_START}(\\d+){_SPAN_END}")

_URI_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*)>")
_EMAIL_AUTOLINK = re.compile(r"<([\w.!#$%&'*+/=?^`{|}~\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*)>")
_CHANNEL_LINK = re.compile(r"<#C[A-Z0-9]+(?:\|[^<>]*)?>")
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
class Markers:
    """What bold, italic and struck-through text are wrapped in."""

    bold: str
    italic: str
    strike: str


_SLACK_MARKERS = Markers(bold="*", italic="_", strike="~")
ALREADY_BOLD_MARKERS = Markers(bold="", italic="_", strike="~")
_NO_MARKERS = Markers(bold="", italic="", strike="")


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


def inline_mrkdwn(text: str, *, markers: Markers = _SLACK_MARKERS) -> str:
    """Converts one line of inline Markdown into escaped Slack mrkdwn."""
    protected, spans = _protect_spans(text)
    marked = escape_mrkdwn(_mark_emphasis(protected)).translate(_marker_table(markers))
    marked = unping_bare_broadcasts(marked)
    return _SPAN_PLACEHOLDER.sub(lambda match: spans[int(match[1])].mrkdwn, marked)


def inline_plain(text: str) -> str:
    """Reduces inline Markdown to unescaped plain text (for labels and table cells)."""
    protected, spans = _protect_spans(text)
    marked = _mark_emphasis(protected).translate(_marker_table(_NO_MARKERS))
    return _SPAN_PLACEHOLDER.sub(lambda match: spans[int(match[1])].plain, marked)


def without_placeholder_chars(text: str) -> str:
    """Removes the private-use characters that stand in for spans and emphasis here."""
    return text.translate(_PLACEHOLDER_CHARS)


def _marker_table(markers: Markers) -> dict[int, str]:
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
    return _Span(mrkdwn=escape_mrkdwn(escaped), plain=escaped), start + 2


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
    return _Span(mrkdwn=opening + escape_mrkdwn(content) + opening, plain=content), closing.end()


def _parse_angle_bracket(text: str, start: int) -> tuple[_Span, int] | None:
    if match := _CHANNEL_LINK.match(text, start):
        # A link to a channel notifies nobody, so the model's one stays live.
        return _Span(mrkdwn=match[0], plain=match[0]), match.end()
    if match := PING.match(text, start):
        # The model's mention is shown by name but pings nobody.
        name = pinged_name(match)
        return _Span(mrkdwn=NO_PING + escape_mrkdwn(name), plain="@" + name), match.end()
    if match := _URI_AUTOLINK.match(text, start):
        return _Span(mrkdwn=f"<{_slack_url(match[1])}>", plain=match[1]), match.end()
    if match := _EMAIL_AUTOLINK.match(text, start):
        address = escape_mrkdwn(match[1])
        return _Span(mrkdwn=f"<mailto:{address}|{address}>", plain=match[1]), match.end()
    return None


def _parse_image(text: str, start: int) -> tuple[_Span, int] | None:
    if not text.startswith("![", start):
        return None
    parsed = parse_link_parts(text, start + 1)
    if parsed is None:
        return None
    alt, url, end = parsed
    label = inline_plain(alt)
    # An image's alt text alone describes it, e.g. inside the label of a badge link.
    return _Span(mrkdwn=_link_span(url=url, label=label).mrkdwn, plain=label or url), end


def _parse_link(text: str, start: int) -> tuple[_Span, int] | None:
    parsed = parse_link_parts(text, start)
    if parsed is None:
        return None
    label, url, end = parsed
    return _link_span(url=url, label=inline_plain(label)), end


def _link_span(*, url: str, label: str) -> _Span:
    if not url:
        return _Span(mrkdwn=escape_mrkdwn(label), plain=label)
    if label in ("", url):
        return _Span(mrkdwn=f"<{_slack_url(url)}>", plain=url)
    return _Span(mrkdwn=f"<{_slack_url(url)}|{escape_mrkdwn(label)}>", plain=f"{label} ({url})")


def _parse_bare_url(text: str, start: int) -> tuple[_Span, int] | None:
    before = text[start - 1] if start > 0 else ""
    if before.isalnum() or before in ("/", ".", "-", "@"):
        return None
    match = _BARE_URL.match(text, start)
    if match is None:
        return None
    url = _trim_url_end(match[0], emphasis=before if before in _EMPHASIS_CHARS else "")
    if url.lower().startswith("www."):
        mrkdwn = f"<http://{_slack_url(url)}|{escape_mrkdwn(url)}>"
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
