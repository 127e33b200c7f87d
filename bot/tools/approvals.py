"""Tool calls that wait for the asker's Allow/Deny: the decision rules (pure) and the store.

The turn waits stored (`TurnStatus.AWAITING_APPROVAL`, its conversation's lease released and
not flagged), so no process works on it and a restart loses nothing. A click from the person
who asked stores the decision, moves the turn to RESUMING and flags the conversation: the
dispatcher then hands the turn to whichever process scans next.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.assistants.base import ApprovalRequest
from bot.store.models import Conversation, Turn
from bot.store.tool_models import ToolApproval
from bot.tools.mcp_client import DENIED_TEXT
from bot.turns.states import TurnStatus

__all__ = ["DENIED_TEXT", "ApprovalStore", "Click", "Workspace", "click_outcome"]

ALLOW_ACTION = "tool_approval_allow"
DENY_ACTION = "tool_approval_deny"
MAX_SHOWN_ARGUMENTS = 2_500


@dataclass(frozen=True)
class Workspace:
    """The workspace a stored conversation is in, and its Enterprise Grid organisation."""

    team_id: str
    enterprise_id: str | None = None


class Click(StrEnum):
    RECORDED = "recorded"
    NOT_YOURS = "not_yours"
    ALREADY_DECIDED = "already_decided"
    GONE = "gone"


def click_outcome(*, requester: str | None, clicker: str, decided: bool) -> Click:
    """What a click on Allow/Deny does: only the person who asked decides, once."""
    if requester is None:
        return Click.GONE
    if clicker != requester:
        return Click.NOT_YOURS
    if decided:
        return Click.ALREADY_DECIDED
    return Click.RECORDED


CLICK_NOTES = {
    Click.NOT_YOURS: "Only the person who asked can allow or deny this tool call.",
    Click.ALREADY_DECIDED: "This tool call was already answered.",
    Click.GONE: "This request is no longer stored.",
}


def approval_text(request: ApprovalRequest, *, requester: str) -> str:
    return f"<@{requester}>, may I run `{request.tool}` ({request.server}) with these arguments?"


def approval_blocks(request: ApprovalRequest, *, requester: str, approval_id: int) -> list[Any]:
    """The question with its arguments and the two buttons (Block Kit, slack_sdk models)."""
    try:
        shown = json.dumps(json.loads(request.arguments or "{}"), indent=2, ensure_ascii=False)
    except ValueError:
        shown = request.arguments
    if len(shown) > MAX_SHOWN_ARGUMENTS:
        shown = shown[:MAX_SHOWN_ARGUMENTS] + "\n…"
    blocks = [
        SectionBlock(text=MarkdownTextObject(text=approval_text(request, requester=requester))),
        SectionBlock(text=MarkdownTextObject(text=f"```{shown}```")),
        ActionsBlock(
            elements=[
                ButtonElement(
                    text="Allow", action_id=ALLOW_ACTION, value=str(approval_id), style="primary"
                ),
                ButtonElement(
                    text="Deny", action_id=DENY_ACTION, value=str(approval_id), style="danger"
                ),
            ]
        ),
    ]
    return [block.to_dict() for block in blocks]


def decided_blocks(request: ApprovalRequest, *, allowed: bool, user_id: str) -> list[Any]:
    verdict = "✅ Allowed" if allowed else "🚫 Denied"
    text = f"`{request.tool}` ({request.server}): {verdict} by <@{user_id}>"
    return [ContextBlock(elements=[MarkdownTextObject(text=text)]).to_dict()]


def as_request(row: ToolApproval) -> ApprovalRequest:
    return ApprovalRequest(row.call_id, row.server, row.tool, row.arguments, row.state)


class ApprovalStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def add(
        self, *, turn_id: int, conversation_id: int, request: ApprovalRequest, requester: str
    ) -> ToolApproval:
        """Store the waiting call, once per turn and call (a retried step finds it)."""
        found = await self._find(turn_id, request.call_id)
        if found is not None:
            return found
        row = ToolApproval(
            turn_id=turn_id,
            conversation_id=conversation_id,
            call_id=request.call_id,
            server=request.server,
            tool=request.tool,
            arguments=request.arguments,
            state=request.state,
            requester=requester,
            created_at=time.time(),
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            found = await self._find(turn_id, request.call_id)
            assert found is not None
            return found
        return row

    async def _find(self, turn_id: int, call_id: str) -> ToolApproval | None:
        async with self._sessions() as session:
            found: ToolApproval | None = await session.scalar(
                select(ToolApproval).where(
                    ToolApproval.turn_id == turn_id, ToolApproval.call_id == call_id
                )
            )
            return found

    async def set_message(self, approval_id: int, ts: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(ToolApproval).where(ToolApproval.id == approval_id).values(message_ts=ts)
            )

    async def decide(
        self, *, approval_id: int, user_id: str, allowed: bool
    ) -> tuple[Click, ToolApproval | None, Workspace | None]:
        """Store a click: the decision, the turn moved on, its conversation flagged. With
        it, the workspace (and organisation) of the call's conversation, where the card is."""
        async with self._sessions.begin() as session:
            row = await session.get(ToolApproval, approval_id, with_for_update=True)
            outcome = click_outcome(
                requester=row.requester if row is not None else None,
                clicker=user_id,
                decided=row is not None and row.decision is not None,
            )
            workspace = None
            if row is not None:
                conversation = await session.get(Conversation, row.conversation_id)
                if conversation is not None:
                    workspace = Workspace(conversation.team_id, conversation.enterprise_id)
            if outcome is not Click.RECORDED or row is None:
                return outcome, row, workspace
            row.decision = "allow" if allowed else "deny"
            row.decided_by, row.decided_at = user_id, time.time()
            await session.execute(
                update(Turn)
                .where(Turn.id == row.turn_id, Turn.status == TurnStatus.AWAITING_APPROVAL)
                .values(status=TurnStatus.RESUMING)
            )
            await session.execute(
                update(Conversation)
                .where(Conversation.id == row.conversation_id)
                .values(needs_attention=True, updated_at=time.time())
            )
            return outcome, row, workspace

    async def decided_for(self, turn_id: int) -> ToolApproval | None:
        """The turn's decided call not yet carried on."""
        async with self._sessions() as session:
            found: ToolApproval | None = await session.scalar(
                select(ToolApproval)
                .where(
                    ToolApproval.turn_id == turn_id,
                    ToolApproval.decision.is_not(None),
                    ToolApproval.resumed.is_(False),
                )
                .order_by(ToolApproval.id.desc())
                .limit(1)
            )
            return found

    async def mark_resumed(self, approval_id: int) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(ToolApproval).where(ToolApproval.id == approval_id).values(resumed=True)
            )
