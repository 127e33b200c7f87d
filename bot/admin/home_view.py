"""The App Home views: the admin view (usage, feedback, settings, errors) and, for everyone
else, how to use the bot (pure: data in, Block Kit out)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.admin.channel_settings import ChannelSettings
from bot.admin.report import Totals
from bot.admin.store import ErrorSummary, FeedbackSummary
from bot.escape import escape_mrkdwn

REASON_ACTION = "feedback_reason"
REASON_CALLBACK = "feedback_reason"
REASON_BLOCK = "reason"

USER_HOME_TEXT = (
    "*Hi, I'm your team's assistant.* I answer questions with an OpenAI assistant and keep the "
    "whole Slack thread as the conversation.\n\n"
    "• *In a channel:* mention me (`@assistant your question`). I answer in the thread, and "
    "I keep answering replies in that thread without another mention.\n"
    "• *In a DM or the assistant pane:* just write; every thread is its own conversation.\n"
    "• *Mid-thread:* mention me in an existing thread and I read the earlier messages first.\n"
    "• Use 👍 / 👎 under an answer to tell the people running me how I did.\n"
    "• `/assistant show` tells you how I'm set up in a channel, `/assistant usage` how much "
    "I've been used there."
)


@dataclass(frozen=True)
class AdminHome:
    month: str
    by_channel: Sequence[tuple[str, Totals]]
    top_users: Sequence[tuple[str, Totals]]
    feedback: FeedbackSummary
    channels: Sequence[ChannelSettings]
    errors: ErrorSummary


def user_view() -> dict[str, Any]:
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Assistant"}},
            _section(USER_HOME_TEXT),
        ],
    }


def admin_view(data: AdminHome, *, limit: int = 10) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Assistant: admin view"}},
        _section(f"*Usage in {data.month}* (estimated cost from the price table)"),
    ]
    if data.by_channel:
        blocks.append(_section(_totals_lines(data.by_channel[:limit], mention="#")))
        blocks.append(
            _section("*Top users*\n" + _totals_lines(data.top_users[:limit], mention="@"))
        )
    else:
        blocks.append(_section("No answers yet this month."))
    blocks.append({"type": "divider"})
    feedback = f"*Feedback this month:* 👍 {data.feedback.up}   👎 {data.feedback.down}"
    if data.feedback.latest_reasons:
        feedback += "\n*Latest 👎 reasons:*\n" + "\n".join(
            f"• {_day(at)} <@{user}>: {_clip(reason)}"
            for at, user, reason in data.feedback.latest_reasons
        )
    blocks.append(_section(feedback))
    blocks.append({"type": "divider"})
    if data.channels:
        lines = [_channel_line(c) for c in data.channels[:limit]]
        blocks.append(_section("*Channels with their own settings*\n" + "\n".join(lines)))
    else:
        blocks.append(_section("*Channels with their own settings:* none, all use the defaults."))
    errors = f"*Errors in the last 24 hours:* {data.errors.count}"
    if data.errors.most_common:
        errors += f" (most often: `{escape_mrkdwn(data.errors.most_common)}`)"
    blocks.append(_section(errors))
    blocks.append(_section(USER_HOME_TEXT))
    return {"type": "home", "blocks": blocks[:100]}


def reason_modal(turn_id: int) -> dict[str, Any]:
    """The optional 👎 form: what went wrong."""
    return {
        "type": "modal",
        "callback_id": REASON_CALLBACK,
        "private_metadata": str(turn_id),
        "title": {"type": "plain_text", "text": "What went wrong?"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Skip"},
        "blocks": [
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "Tell the people who run me (optional)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_ACTION,
                    "multiline": True,
                    "max_length": 1000,
                },
            }
        ],
    }


def submitted_reason(view: dict[str, Any]) -> tuple[int, str] | None:
    """(turn id, reason) from a submitted reason form; None when empty or not ours."""
    turn_id = str(view.get("private_metadata") or "")
    values = ((view.get("state") or {}).get("values") or {}).get(REASON_BLOCK) or {}
    reason = str((values.get(REASON_ACTION) or {}).get("value") or "").strip()
    if not turn_id.isdigit() or not reason:
        return None
    return int(turn_id), reason[:1000]


def _totals_lines(groups: Sequence[tuple[str, Totals]], *, mention: str) -> str:
    return "\n".join(f"• <{mention}{key}>: {t.counts_text}, {t.cost_text}" for key, t in groups)


def _channel_line(settings: ChannelSettings) -> str:
    parts = []
    if not settings.enabled:
        parts.append("*off*")
    if settings.model:
        parts.append(f"model `{escape_mrkdwn(settings.model)}`")
    if settings.instructions:
        parts.append(f"instructions: _{_clip(settings.instructions, 80)}_")
    if settings.budget:
        parts.append(f"budget {settings.budget.describe()}")
    if settings.mcp_servers is not None:
        parts.append(f"tools: {settings.value_of('mcp_servers')}")
    return f"• <#{settings.channel_id}>: " + ", ".join(parts)


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%b %d")


def _clip(text: str, limit: int = 200) -> str:
    """Someone's text, on one line, shortened, and escaped: shown as typed, never as markup
    (a reason of `<!channel>` must not ping the admin's workspace)."""
    flat = " ".join(text.split())
    return escape_mrkdwn(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}
