"""The text the assistant receives for one turn: who said what, as plainly as the chat allows."""

from __future__ import annotations

from collections.abc import Sequence


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
