"""Every way a run can end is an outcome the user is told about."""

from bot.assistants.base import RunState
from bot.replies import OUTCOME_MESSAGES
from bot.turns.states import Outcome


def test_every_finished_run_state_is_an_outcome_with_a_message() -> None:
    # NEEDS_APPROVAL ends a run's step, not the turn: the turn waits for a click.
    finished = [s for s in RunState if s.finished and s is not RunState.NEEDS_APPROVAL]
    assert {state.value for state in finished} <= {outcome.value for outcome in Outcome}
    # "completed" shows the answer; "over_budget" shows the refusal stored as its answer;
    # "uninstalled" shows nothing (the workspace removed the bot).
    told = {outcome.value for outcome in Outcome} - {"completed", "over_budget", "uninstalled"}
    assert told <= set(OUTCOME_MESSAGES)
