"""The pieces of Slack's markup that several of the text modules share."""

from __future__ import annotations

FENCE = "```"
USER_ID = r"[UW][A-Z0-9]+"
"""A Slack user id, as a regular expression (`U…`, or `W…` in an Enterprise Grid org)."""
BROADCASTS = ("here", "channel", "everyone")
"""The words of `<!here>`, `<!channel>` and `<!everyone>`, which notify a whole channel."""
