"""The pieces of Slack's markup that every text transformation shares."""

from __future__ import annotations

FENCE = "```"
USER_ID = r"[UW][A-Z0-9]+"
"""A Slack user id, as a regular expression (`U…`, or `W…` in an Enterprise Grid org)."""
BROADCASTS = ("here", "channel", "everyone")
"""The words of `<!here>`, `<!channel>` and `<!everyone>`, which notify a whole channel."""


def escape(text: str) -> str:
    """Escapes the three characters Slack treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Reverses `escape`; `&amp;` goes last so `&amp;lt;` becomes `&lt;`, not `<`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
