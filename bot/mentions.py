"""The model's mentions of people: shown by name, and never a ping, also when streamed.

Text the model writes must not notify anyone (`bot.text.unping_markdown` makes its mentions
plain). Two things make that hold for a streamed answer too: a mention the model wrote as
`<@U…>` gets the person's name as its label first, so the user reads "@Alan" rather than an
id; and a chunk that ends inside what may become a mention keeps that tail back until the
next chunk, since Slack would otherwise join `<@U` and `ALAN>` into a live mention.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_UNLABELLED_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")
_UNFINISHED_TOKEN = re.compile(r"<(?:[@!][^<>\n]*)?\Z")
_TRAILING_AT = re.compile(r"(?<![\w@])@(\w*)\Z")
_BROADCASTS = ("here", "channel", "everyone")
MAX_HELD_CHARS = 200
"""A tail longer than this is no mention Slack would parse; it is sent as it is."""


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
    if match and any(word.startswith(match[1]) for word in _BROADCASTS):
        return text[: match.start()], text[match.start() :]
    return text, ""
