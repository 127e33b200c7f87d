"""One turn in the hands of this process, for one attempt: the stored turn (`ActiveTurn`)
and its tool state, which the backends act on and the turn stores with itself. Opened when
the runner takes the turn, closed in one `finally`."""

from __future__ import annotations

from dataclasses import dataclass

from bot import metrics
from bot.assistants.turn_tools import TurnTools
from bot.turns.active import ActiveTurn


@dataclass
class TurnSession:
    active: ActiveTurn
    tools: TurnTools

    @classmethod
    def open(cls, active: ActiveTurn) -> TurnSession:
        """The turn, its tool state as stored (fresh for a new turn)."""
        return cls(active, TurnTools.load(active.turn.tool_state))

    async def mark_running(self, run_id: str, backend: str) -> None:
        """The run is known; the tool state is stored with it."""
        await self.active.mark_running(run_id, backend, tool_state=self.tools.dump())

    async def mark_awaiting_approval(self) -> None:
        """The turn waits for a click; its tool state is stored to carry on with."""
        await self.active.mark_awaiting_approval(tool_state=self.tools.dump())

    async def close(self, *, over_here: bool) -> None:
        """Let go of what the attempt holds open; `over_here`: the turn ended, or another
        process carries it on, so nothing of it stays in memory (its timings included)."""
        await self.tools.close()
        if over_here:
            metrics.forget(self.active.turn.id)
