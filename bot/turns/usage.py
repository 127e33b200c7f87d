"""The one place a turn's usage is added up: every model request's tokens and estimated cost,
whichever backend reported them and however many requests the turn made (tool rounds,
approvals, search continuations, runs cancelled at the deadline)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from bot import metrics
from bot.admin.service import AdminService
from bot.assistants.base import Usage
from bot.store.admin_models import TurnUsage
from bot.turns.active import ActiveTurn

log = logging.getLogger(__name__)


class UsageMeter:
    def __init__(self, admin: AdminService) -> None:
        self._admin = admin

    async def add(self, active: ActiveTurn, usage: Usage | None) -> None:
        """Add one report to the turn's stored total (budgets read it) and to the token and
        cost metrics; a failure here never costs the answer."""
        if usage is None:
            return
        turn = active.turn
        try:
            cost = await self._admin.record_usage(
                turn_id=turn.id, conversation_id=turn.conversation_id, usage=usage
            )
        except Exception as exc:
            log.warning("turn %s: usage not recorded: %r", turn.id, exc)
            return
        metrics.usage(usage, cost)

    async def total(self, turn_id: int) -> TurnTotal:
        """The turn's tokens and estimated cost so far (zeros when nothing was reported)."""
        try:
            async with self._admin.store.engine.connect() as connection:
                row = (
                    await connection.execute(
                        select(
                            TurnUsage.model,
                            TurnUsage.input_tokens,
                            TurnUsage.output_tokens,
                            TurnUsage.cost_usd,
                        ).where(TurnUsage.turn_id == turn_id)
                    )
                ).first()
        except Exception as exc:
            log.warning("turn %s: usage not read: %r", turn_id, exc)
            return TurnTotal()
        if row is None:
            return TurnTotal()
        return TurnTotal(row.model, row.input_tokens, row.output_tokens, row.cost_usd)


@dataclass(frozen=True)
class TurnTotal:
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
