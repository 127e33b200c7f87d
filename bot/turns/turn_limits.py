"""What a turn may do before the assistant is asked: whether a budget already stops it, and
whether workspace search may act for its newest message."""

from __future__ import annotations

import logging

from bot.admin.channel_settings import ChannelSettings
from bot.admin.policy import Asker
from bot.admin.service import AdminService
from bot.assistants.base import ToolContext
from bot.store.inbox import Inbox
from bot.turns.active import ActiveTurn
from bot.turns.states import Outcome

log = logging.getLogger(__name__)


def asker_of(active: ActiveTurn) -> Asker:
    return Asker.of(active.conversation, [m.user_team_id for m in active.messages])


def tool_context(active: ActiveTurn, *, inbox: Inbox, search: bool) -> ToolContext | None:
    """Workspace search acts for the newest message, with the token Slack gave it (not for
    Slack Connect users of another organisation)."""
    newest = active.messages[-1] if active.messages else None
    if not search or newest is None or asker_of(active).external_teams:
        return None
    token = inbox.action_token(newest)
    if token is None:
        return None
    conversation = active.conversation
    return ToolContext(
        token,
        conversation.channel_id,
        team_id=conversation.team_id,
        enterprise_id=conversation.enterprise_id,
    )


async def over_budget(active: ActiveTurn, channel: ChannelSettings, admin: AdminService) -> bool:
    """A reached budget ends the turn with its reply, before any call to the assistant."""
    if not active.messages:
        return False
    conversation = active.conversation
    refusal = await admin.refusal_for(
        channel,
        team_id=conversation.team_id,
        channel_id=conversation.channel_id,
        user_id=active.messages[0].user_id,
    )
    if refusal is None:
        return False
    log.info("turn %s: not asked, %s reached", active.turn.id, refusal.limit.source)
    await active.mark_posting(Outcome.OVER_BUDGET, refusal.text())
    return True
