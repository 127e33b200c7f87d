"""What happens when a turn is over: a finished turn writes one log line for operators
(where, which backend and model, how it ended, what it used and how long it took; never the
message text)."""

from __future__ import annotations

import logging
from typing import Any

from bot.assistants.base import AssistantBackend
from bot.turns.session import TurnSession, TurnTimings
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
    timings: TurnTimings,
) -> dict[str, Any]:
    """The line's fields (pure). The latencies are measured from the stored messages, so
    they are known even when another process or an earlier attempt started the turn."""
    first_words_s, complete_s = timings.first_words_s, timings.complete_s
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
        "first_words_s": None if first_words_s is None else round(first_words_s, 3),
        "complete_s": None if complete_s is None else round(complete_s, 3),
    }


class TurnEnding:
    def __init__(self, backend: AssistantBackend, usage: UsageMeter) -> None:
        self._backend = backend
        self._usage = usage

    async def report(self, session: TurnSession) -> None:
        total = await self._usage.total(session.active.turn.id)
        log_finished(session, backend=self._backend.name, usage=total)


def log_finished(session: TurnSession, *, backend: str, usage: TurnTotal) -> None:
    turn, conversation = session.active.turn, session.active.conversation
    fields = turn_fields(
        turn_id=turn.id,
        team=conversation.team_id,
        channel=conversation.channel_id,
        backend=turn.backend or backend,
        outcome=Outcome(turn.outcome or Outcome.FAILED),
        usage=usage,
        timings=session.timings,
    )
    log.info("turn finished", extra={"fields": fields})
