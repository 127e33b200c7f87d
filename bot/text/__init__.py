"""Pure text transformations between Slack and the AI model; nothing here performs I/O.

- `slack_markup`: Slack markup -> plain text for the model.
- `turn_input`: the text the model receives for one turn (who said what).
- `citations`: file-search citation markers, stripped or made footnotes.
- `markdown` (with `inline` and `link_syntax`): the model's Markdown -> Slack mrkdwn.
- `mentions`: the model's mentions shown by name and never a ping, also when streamed.
- `split`: long messages split into chunks that fit into one Slack message.

Code in `bot/` imports from these modules; the names below are also importable from
`bot.text` itself.
"""

from __future__ import annotations

from bot.text.citations import Source, marker_title, strip_citation_markers, with_sources
from bot.text.markdown import markdown_to_mrkdwn
from bot.text.mentions import NO_PING, unping_markdown
from bot.text.slack_markup import mentioned_user_ids, slack_to_plain
from bot.text.split import split_message
from bot.text.turn_input import build_turn_input

__all__ = [
    "NO_PING",
    "Source",
    "build_turn_input",
    "markdown_to_mrkdwn",
    "marker_title",
    "mentioned_user_ids",
    "slack_to_plain",
    "split_message",
    "strip_citation_markers",
    "unping_markdown",
    "with_sources",
]
