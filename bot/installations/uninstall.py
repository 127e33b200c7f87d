"""A workspace (or an organisation) that uninstalls the bot: which installation that is,
its unfinished work ended, and, when the operator asks for it, its stored data deleted."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.installations.keys import TeamKey
from bot.store.models import Conversation, Feedback, InboxMessage, Turn
from bot.turns.states import Outcome, TurnStatus


def _team_filter(key: TeamKey, spared: Any = None) -> Any:
    """The conversations of the workspace, or of every workspace of the organisation when an
    org-wide install is removed (but those of `spared`, its workspaces that installed the bot
    on their own)."""
    if key.team_id:
        return Conversation.team_id == key.team_id
    of_org = Conversation.enterprise_id == key.enterprise_id
    if spared is None:
        return of_org
    return sa.and_(of_org, Conversation.team_id.not_in(spared))


def uninstalled(*, team_id: str | None, enterprise_id: str | None, org_wide: bool) -> TeamKey:
    """Which installation an `app_uninstalled` or `tokens_revoked` names: the organisation's
    when the event says the install is org-wide or names no workspace of its own (no team,
    or the organisation's `E…` id in its place), else the workspace's."""
    team = team_id or ""
    if not enterprise_id and team.startswith("E"):
        return TeamKey("", team)
    if enterprise_id and (org_wide or not team or team == enterprise_id):
        return TeamKey("", enterprise_id)
    return TeamKey(team, enterprise_id)


async def end_work(engine: AsyncEngine, key: TeamKey, *, spared: Any = None) -> None:
    """Stop the workspace's work: open turns end without a reply, waiting messages are not
    answered, and every lease is fenced off (its generation moves on), so a process working
    on one of its conversations stops at its next step instead of posting."""
    now = time.time()
    ids = sa.select(Conversation.id).where(_team_filter(key, spared)).scalar_subquery()
    async with engine.begin() as connection:
        await connection.execute(
            sa.update(Turn)
            .where(Turn.conversation_id.in_(ids), Turn.status != "done")
            .values(status=TurnStatus.DONE, outcome=Outcome.UNINSTALLED, finished_at=now)
        )
        await connection.execute(
            sa.update(InboxMessage)
            .where(InboxMessage.conversation_id.in_(ids), InboxMessage.turn_id.is_(None))
            .values(refused=True)
        )
        await connection.execute(  # no turn of theirs runs again: their tokens are not needed
            sa.update(InboxMessage)
            .where(InboxMessage.conversation_id.in_(ids), InboxMessage.action_token.is_not(None))
            .values(action_token=None)
        )
        await connection.execute(
            sa.update(Conversation)
            .where(_team_filter(key, spared))
            .values(
                needs_attention=False,
                lease_owner=None,
                lease_until=None,
                lease_generation=Conversation.lease_generation + 1,
            )
        )


async def delete_team_data(engine: AsyncEngine, key: TeamKey, *, spared: Any = None) -> None:
    """Everything stored about the workspace: conversations, messages, answers, feedback,
    usage, channel settings and their history, the chat backend's messages, approvals and DM
    users; the conversations' OpenAI ids are kept in `remote_deletions` until deleted there
    (bot/remote_deletions.py)."""
    from bot.remote_deletions import forget_team_rows
    from bot.store.admin_models import ChannelSetting, SettingsChange, TurnUsage

    where = _team_filter(key, spared)
    ids = sa.select(Conversation.id).where(where).scalar_subquery()
    async with engine.begin() as connection:
        teams = [key.team_id]
        if not key.team_id:
            found = await connection.scalars(
                sa.select(Conversation.team_id).where(where).distinct()
            )
            teams = [str(team) for team in found]
        await forget_team_rows(connection, conversations=ids, where=where, teams=teams)
        turn_ids = sa.select(Turn.id).where(Turn.conversation_id.in_(ids))
        await connection.execute(sa.delete(Feedback).where(Feedback.turn_id.in_(turn_ids)))
        await connection.execute(
            sa.delete(InboxMessage).where(InboxMessage.conversation_id.in_(ids))
        )
        await connection.execute(sa.delete(Turn).where(Turn.conversation_id.in_(ids)))
        await connection.execute(sa.delete(Conversation).where(where))
        for model in (TurnUsage, ChannelSetting, SettingsChange):
            await connection.execute(sa.delete(model).where(model.team_id.in_(teams)))
