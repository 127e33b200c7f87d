"""What happens when a turn is over: a finished turn writes one log line for operators
(where, which backend and model, how it ended, what it used and how long it took; never the
message text)."""

from __future__ import annotations

import logging
import time
from typing import Any

from bot.assistants.base import AssistantBackend
from bot.metrics import Timing
from bot.turns.active import ActiveTurn
from bot.turns.states import Outcome
from bot.turns.usage import TurnTotal, UsageMeter

log = logging.getLogger(__name__)


def turn_fields(
    *,
    turn_id: int,
    team: str,
    channel: str,
    backend: str,
    outcome: Outcome,
    usage: TurnTotal,
    timing: Timing | None,
    received_at: float | None,
    now: float,
) -> dict[str, Any]:
    """The line's fields (pure). Latency to the end is known from the stored messages even
    when another process started the turn; to the first words only where it was seen."""
    complete_s = timing.complete_s if timing is not None else None
    if complete_s is None and received_at is not None:
        complete_s = max(0.0, now - received_at)
    return {
        "turn_id": turn_id,
        "team": team,
        "channel": channel,
        "backend": backend,
        "model": usage.model,
        "outcome": outcome.value,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_usd": None if usage.cost_usd is None else round(usage.cost_usd, 6),
        "first_words_s": None if timing is None else round(timing.first_words_s, 3),
        "complete_s": None if complete_s is None else round(complete_s, 3),
    }


class TurnEnding:
    def __init__(self, backend: AssistantBackend, usage: UsageMeter) -> None:
        self._backend = backend
        self._usage = usage

    async def report(self, active: ActiveTurn) -> None:
        total = await self._usage.total(active.turn.id)
        log_finished(active, backend=self._backend.name, usage=total)


def log_finished(active: ActiveTurn, *, backend: str, usage: TurnTotal) -> None:
    turn, conversation = active.turn, active.conversation
    received = [message.received_at for message in active.messages]
    fields = turn_fields(
        turn_id=turn.id,
        team=conversation.team_id,
        channel=conversation.channel_id,
        backend=turn.backend or backend,
        outcome=Outcome(turn.outcome or Outcome.FAILED),
        usage=usage,
        timing=active.timing,
        received_at=min(received) if received else None,
        now=time.time(),
    )
    log.info("turn finished", extra={"fields": fields})
