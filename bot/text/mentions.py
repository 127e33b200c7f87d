"""The model's mentions of people: shown by name, and never a ping, also when streamed.

Text the model writes must not notify anyone: `unping_markdown` (and the Markdown converter,
through `PING` and `unping_bare_broadcasts`) shows its mentions as plain names. Two things make
that hold for a streamed answer too: a mention the model wrote as `<@U…>` gets the person's
name as its label first, so the user reads "@Alan" rather than an id; and a chunk that ends
inside what may become a mention keeps that tail back until the next chunk, since Slack would
otherwise join `<@U` and `ALAN>` into a live mention.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.text.slack_syntax import BROADCASTS, USER_ID

_BROADCAST_WORDS = "|".join(BROADCASTS)
# Slack's markup for notifying people: a user, a user group, or a broadcast to a channel.
PING = re.compile(
    rf"<(?:@(?P<user>{USER_ID})|!subteam\^(?P<group>[A-Z0-9]+)|!(?P<broadcast>{_BROADCAST_WORDS}))"
    r"(?:\|(?P<label>[^<>]*))?>"
)
# A bare "@here" in a section block's mrkdwn may be parsed into a live broadcast (Slack parses
# "certain mentions" automatically unless `verbatim` is set); the joiner keeps it plain text.
_BARE_BROADCAST = re.compile(rf"(?<![\w@])@({_BROADCAST_WORDS})\b")
NO_PING = "@\u2060"
"""How the model's mentions are shown: an "@" followed by an invisible word joiner, which no
Slack parser takes for a mention, so the name reads as usual but notifies nobody."""
_UNLABELLED_MENTION = re.compile(rf"<@({USER_ID})>")
_UNFINISHED_TOKEN = re.compile(r"<(?:[@!][^<>\n]*)?\Z")
_TRAILING_AT = re.compile(r"(?<![\w@])@(\w*)\Z")
MAX_HELD_CHARS = 200
"""A tail longer than this is no mention Slack would parse; it is sent as it is."""


def unping_markdown(markdown: str) -> str:
    """The model's raw Markdown with its mentions and broadcasts made plain, for the places
    that send Markdown to Slack unconverted (a streamed preview's `markdown_text`)."""
    return unping_bare_broadcasts(PING.sub(lambda match: NO_PING + pinged_name(match), markdown))


def unping_bare_broadcasts(text: str) -> str:
    """`@here`, `@channel` and `@everyone` written out, made plain text."""
    return _BARE_BROADCAST.sub(NO_PING + r"\1", text)


def pinged_name(match: re.Match[str]) -> str:
    """The name a `PING` match (`<@U…>`, `<!subteam^…>`, `<!channel>`) shows, without its "@":
    text the model writes must not notify people, whoever it names."""
    return (
        (match["label"] or "").lstrip("@") or match["user"] or match["group"] or match["broadcast"]
    )


def unlabelled_mentions(markdown: str) -> list[str]:
    """User ids the model mentioned without a name, in order of first mention."""
    return list(dict.fromkeys(_UNLABELLED_MENTION.findall(markdown)))


def name_mentions(markdown: str, names: Mapping[str, str]) -> str:
    """`<@U1>` becomes `<@U1|Alan>` where the name is known, so it is shown by name."""

    def label(match: re.Match[str]) -> str:
        user_id = match[1]
        name = _safe_label(names.get(user_id, ""))
        return f"<@{user_id}|{name}>" if name and name != user_id else match[0]

    return _UNLABELLED_MENTION.sub(label, markdown)


def _safe_label(name: str) -> str:
    return re.sub(r"[<>|\n]", "", name).strip()


def split_unfinished(text: str) -> tuple[str, str]:
    """(what may be sent now, the tail to hold back): a tail that the next chunk could
    turn into a mention or a broadcast (`<@U12`, `<!chan`, `@ever`)."""
    start = text.rfind("<")
    if start != -1 and len(text) - start <= MAX_HELD_CHARS and _UNFINISHED_TOKEN.match(text, start):
        return text[:start], text[start:]
    match = _TRAILING_AT.search(text)
    if match and any(word.startswith(match[1]) for word in BROADCASTS):
        return text[: match.start()], text[match.start() :]
    return text, ""
