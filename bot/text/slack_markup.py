"""Slack markup -> plain text the model can read: mentions, channels, links, special tokens."""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.escape import unescape_mrkdwn
from bot.text.slack_syntax import BROADCASTS, USER_ID

_SLACK_TOKEN = re.compile(r"<([^<>]+)>")
_USER_MENTION = re.compile(rf"<@({USER_ID})(?:\|[^<>]*)?>")
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

    return unescape_mrkdwn(_SLACK_TOKEN.sub(render, text)).strip()


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
    if keyword in BROADCASTS:
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
