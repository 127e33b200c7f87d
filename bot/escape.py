"""Text that people typed (or a model wrote), shown to someone else in Slack mrkdwn.

Slack reads `&`, `<` and `>` as its own markup: `<!channel>` pings everyone, `<@U…>` pings a
person, `<https://…|label>` hides where a link goes. Escaped, such text shows as typed.
"""

from __future__ import annotations


def escape_mrkdwn(text: str) -> str:
    """`text` shown literally in a mrkdwn field: `&` first, so nothing is escaped twice."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape_mrkdwn(text: str) -> str:
    """Reverses `escape_mrkdwn`; `&amp;` goes last so `&amp;lt;` becomes `&lt;`, not `<`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
