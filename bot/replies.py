"""What the bot posts: answers as Slack blocks, and the plain words for each way a run can end.

Pure functions only; the conversation service posts what they build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.text.markdown import markdown_to_mrkdwn
from bot.text.split import split_message

# A section block's text may hold 3,000 characters; leave room for a reopened code fence.
SECTION_LIMIT = 2900
FEEDBACK_ACTION_ID = {"up": "feedback_up", "down": "feedback_down"}

OUTCOME_MESSAGES = {
    "failed": "Sorry, the assistant ran into an error and couldn't answer. Please try again.",
    "expired": "Sorry, the assistant took too long to answer, so I stopped it. Please try again.",
    "cancelled": (
        "The assistant's run was cancelled before it finished, so there is no answer. "
        "Please try again."
    ),
    "incomplete": "The assistant stopped before finishing its answer (it hit a length limit).",
    "requires_action": (
        "The assistant tried to use a tool this bot can't run, so I stopped it. "
        "Please rephrase your question."
    ),
    "unavailable": (
        "Sorry, I couldn't reach the assistant service just now. Please try again in a minute."
    ),
    "rejected": (
        "Sorry, the assistant service refused this request. "
        "If it keeps happening, please tell whoever runs this bot."
    ),
    "too_long": (
        "Sorry, this conversation has grown too long for the model, even after I shortened "
        "it. Please start a new thread."
    ),
    "empty": "Hi! Ask me a question in this thread and I'll answer here.",
    "no_text": "The assistant finished without writing an answer. Please try rephrasing.",
}


@dataclass(frozen=True)
class Reply:
    text: str
    blocks: list[dict[str, Any]] | None = None


def answer_chunks(answer: str, *, turn_id: int) -> list[Reply]:
    """The model's Markdown as Slack messages; the last one carries the feedback buttons."""
    body = markdown_to_mrkdwn(answer)
    chunks = split_message(body, limit=SECTION_LIMIT)
    if not chunks:
        return [outcome_message("no_text")]
    replies = [Reply(text=chunk, blocks=[_section(chunk)]) for chunk in chunks]
    last = replies[-1]
    replies[-1] = Reply(text=last.text, blocks=[*(last.blocks or []), feedback_block(turn_id)])
    return replies


def outcome_message(outcome: str) -> Reply:
    return Reply(text=OUTCOME_MESSAGES.get(outcome, OUTCOME_MESSAGES["failed"]))


def replies_for(*, outcome: str, answer: str | None, turn_id: int) -> list[Reply]:
    """Everything to post for a finished turn: the answer, a clear message, or both."""
    if outcome == "completed" and answer:
        return answer_chunks(answer, turn_id=turn_id)
    if outcome == "incomplete" and answer:
        return [*answer_chunks(answer, turn_id=turn_id), outcome_message(outcome)]
    if outcome == "over_budget" and answer:
        return [Reply(text=answer)]  # the refusal names the limit and when it resets
    return [outcome_message(outcome)]


def feedback_block(turn_id: int) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": f"feedback:{turn_id}",
        "elements": [
            _button("👍", FEEDBACK_ACTION_ID["up"], f"{turn_id}:up"),
            _button("👎", FEEDBACK_ACTION_ID["down"], f"{turn_id}:down"),
        ],
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _button(label: str, action_id: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "value": value,
        "text": {"type": "plain_text", "text": label, "emoji": True},
    }
