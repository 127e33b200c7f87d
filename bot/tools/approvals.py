"""Tool calls that wait for the asker's Allow/Deny: the decision rules (pure) and the store.

The turn waits stored (`TurnStatus.AWAITING_APPROVAL`, its conversation's lease released and
not flagged), so no process works on it and a restart loses nothing. A click from the person
who asked stores the decision, moves the turn to RESUMING and flags the conversation: the
dispatcher then hands the turn to whichever process scans next. Nobody clicking within
`APPROVAL_TIMEOUT_S` (counted from the stored `created_at`, so any process, after any
restart, sees it) stores the decision "expired" the same way: the call is answered as denied.
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
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.assistants.base import ApprovalRequest
from bot.escape import escape_mrkdwn
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
    EXPIRED = "expired"
    GONE = "gone"


class Decision(StrEnum):
    """`tool_approvals.decision` once it is set."""

    ALLOW = "allow"
    DENY = "deny"
    EXPIRED = "expired"


def click_outcome(
    *, requester: str | None, clicker: str, decision: str | None, overdue: bool
) -> Click:
    """What a click on Allow/Deny does: only the person who asked decides, once, and only
    before the request expires (`overdue`: its time is up, even if nobody noted it yet)."""
    if requester is None:
        return Click.GONE
    if clicker != requester:
        return Click.NOT_YOURS
    if decision == Decision.EXPIRED or (decision is None and overdue):
        return Click.EXPIRED
    if decision is not None:
        return Click.ALREADY_DECIDED
    return Click.RECORDED


CLICK_NOTES = {
    Click.NOT_YOURS: "Only the person who asked can allow or deny this tool call.",
    Click.ALREADY_DECIDED: "This tool call was already answered.",
    Click.EXPIRED: "This request expired: nobody answered it in time, so the tool was not run.",
    Click.GONE: "This request is no longer stored.",
}


def waited(timeout_s: float) -> str:
    """How long a request waited, in words: "15 minutes", "1 hour", "30 seconds"."""
    for unit, seconds in (("hour", 3600), ("minute", 60)):
        if timeout_s >= seconds and timeout_s % seconds == 0:
            count = int(timeout_s // seconds)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    count = round(timeout_s)
    return f"{count} second{'s' if count != 1 else ''}"


def expired_note(tool: str, *, timeout_s: float) -> str:
    """The line above an answer given after a request expired."""
    return (
        f"_Nobody allowed `{tool}` within {waited(timeout_s)}, so I did not run it; "
        "ask again if you still want it._"
    )


def approval_text(request: ApprovalRequest, *, requester: str) -> str:
    tool, server = escape_mrkdwn(request.tool), escape_mrkdwn(request.server)
    return f"<@{requester}>, may I run `{tool}` ({server}) with these arguments?"


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
        SectionBlock(text=MarkdownTextObject(text=f"```{escape_mrkdwn(shown)}```")),
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
    tool, server = escape_mrkdwn(request.tool), escape_mrkdwn(request.server)
    text = f"`{tool}` ({server}): {verdict} by <@{user_id}>"
    return [ContextBlock(elements=[MarkdownTextObject(text=text)]).to_dict()]


def expired_blocks(request: ApprovalRequest, *, timeout_s: float) -> list[Any]:
    """The card once nobody answered in time: no buttons, and why."""
    text = (
        f"`{request.tool}` ({request.server}): ⌛ Expired, nobody answered within "
        f"{waited(timeout_s)}; not run"
    )
    return [ContextBlock(elements=[MarkdownTextObject(text=text)]).to_dict()]


def as_request(row: ToolApproval) -> ApprovalRequest:
    return ApprovalRequest(row.call_id, row.server, row.tool, row.arguments, row.state)


_EXPIRED_TOOLS = (
    select(ToolApproval.tool)
    .where(
        ToolApproval.turn_id == bindparam("for_turn"),
        ToolApproval.decision == Decision.EXPIRED,
    )
    .order_by(ToolApproval.id)
)


class ApprovalStore:
    def __init__(self, engine: AsyncEngine, *, timeout_s: float) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.timeout_s = timeout_s

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
        """Store a click: the decision, the turn moved on, its conversation flagged. A click
        after the request's time is up expires it instead (if nobody noted that yet). With
        it, the workspace (and organisation) of the call's conversation, where the card is."""
        async with self._sessions.begin() as session:
            row = await session.get(ToolApproval, approval_id, with_for_update=True)
            outcome = click_outcome(
                requester=row.requester if row is not None else None,
                clicker=user_id,
                decision=row.decision if row is not None else None,
                overdue=row is not None and self._overdue(row.created_at),
            )
            workspace = None
            if row is not None:
                conversation = await session.get(Conversation, row.conversation_id)
                if conversation is not None:
                    workspace = Workspace(conversation.team_id, conversation.enterprise_id)
            if row is None or outcome not in (Click.RECORDED, Click.EXPIRED):
                return outcome, row, workspace
            if row.decision is None:
                decision = Decision.ALLOW if allowed else Decision.DENY
                if outcome is Click.EXPIRED:
                    decision = Decision.EXPIRED
                await _decide(session, row, decision, by=user_id)
            return outcome, row, workspace

    def _overdue(self, created_at: float) -> bool:
        return time.time() >= created_at + self.timeout_s

    async def sweep(self) -> list[int]:
        """Store "expired" for every request nobody answered in time, and move on every turn
        still waiting for a request already answered (a click that landed while its turn was
        being stored as waiting); the conversations that now have work."""
        cutoff = time.time() - self.timeout_s
        async with self._sessions.begin() as session:
            due = (
                await session.scalars(
                    select(ToolApproval)
                    .where(ToolApproval.decision.is_(None), ToolApproval.created_at <= cutoff)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in due:
                await _decide(session, row, Decision.EXPIRED, by=None)
            missed = (
                await session.scalars(
                    select(ToolApproval)
                    .join(Turn, Turn.id == ToolApproval.turn_id)
                    .where(
                        ToolApproval.decision.is_not(None),
                        ToolApproval.resumed.is_(False),
                        Turn.status == TurnStatus.AWAITING_APPROVAL,
                    )
                )
            ).all()
            for row in missed:
                await _wake(session, row)
            return [row.conversation_id for row in [*due, *missed]]

    async def with_expiry_notes(self, turn_id: int, answer: str) -> str:
        """The answer, led by a line for each of the turn's tool calls whose request expired
        (answered to the model as denied). Once per answer: Core on a plain connection, a
        statement built once."""
        if not answer:
            return answer
        async with self._engine.connect() as connection:
            tools = await connection.scalars(_EXPIRED_TOOLS, {"for_turn": turn_id})
            notes = [expired_note(tool, timeout_s=self.timeout_s) for tool in tools]
        return "\n\n".join([*notes, answer]) if notes and answer else answer

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


async def _decide(
    session: AsyncSession, row: ToolApproval, decision: Decision, *, by: str | None
) -> None:
    """Store the decision, move the waiting turn on and flag its conversation."""
    row.decision = decision
    row.decided_by, row.decided_at = by, time.time()
    await _wake(session, row)


async def _wake(session: AsyncSession, row: ToolApproval) -> None:
    """The turn waiting for `row` carries on: resuming, its conversation flagged."""
    now = time.time()
    await session.execute(
        update(Turn)
        .where(Turn.id == row.turn_id, Turn.status == TurnStatus.AWAITING_APPROVAL)
        .values(status=TurnStatus.RESUMING)
    )
    await session.execute(
        update(Conversation)
        .where(Conversation.id == row.conversation_id)
        .values(needs_attention=True, updated_at=now)
    )
