"""The operator's bounds on what a workspace may choose (pure).

Environment settings are the operator's: they are ceilings a channel's own settings may
lower, never raise, in single-token and OAuth mode alike.

- `model_refusal`: `/assistant model` picks from `ALLOWED_MODELS` (default: the priced
  models and `OPENAI_MODEL`), and never a name longer than the database keeps;
- `budget_refusal`: a channel's `/assistant budget` above the operator's limit is refused
  (the operator's limit applies beside a channel's budget in any case);
- `offered_servers`: the MCP servers one turn may use, from the channel's choice, the
  install mode, the servers' `teams` and the askers' own teams (Slack Connect).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.admin.commands import MAX_MODEL_CHARS, Budget, Period
from bot.tools.config import McpServer

ANY_MODEL = "*"
"""`ALLOWED_MODELS=*`: any model name (still no longer than `MAX_MODEL_CHARS`)."""
MODELS_SHOWN = 20
"""How many allowed models a refusal names."""


@dataclass(frozen=True)
class AllowedModels:
    """The model names `/assistant model` may choose (compared ignoring case)."""

    names: tuple[str, ...]
    any: bool = False

    @classmethod
    def of(cls, configured: Sequence[str], *, priced: Iterable[str], default: str) -> AllowedModels:
        """`ALLOWED_MODELS` as configured; when empty, the priced models and `default`."""
        if ANY_MODEL in configured:
            return cls((), any=True)
        names = list(configured) if configured else [*sorted(priced), default]
        return cls(tuple(dict.fromkeys(names)))

    def allows(self, model: str) -> bool:
        if len(model) > MAX_MODEL_CHARS:
            return False
        return self.any or model.lower() in {name.lower() for name in self.names}


def model_refusal(model: str, allowed: AllowedModels) -> str | None:
    """Why a channel may not use `model` (the ephemeral reply), or None when it may."""
    if len(model) > MAX_MODEL_CHARS:
        return f"A model name may be at most {MAX_MODEL_CHARS} characters; that one is longer."
    if allowed.allows(model):
        return None
    shown = ", ".join(f"`{name}`" for name in allowed.names[:MODELS_SHOWN])
    more = " …" if len(allowed.names) > MODELS_SHOWN else ""
    return (
        f"`{model}` is not one of the models this bot's operator allows "
        f"(`ALLOWED_MODELS`): {shown}{more}."
    )


@dataclass(frozen=True)
class Ceiling:
    """An operator's limit on a channel's spending, and the setting it comes from."""

    budget: Budget
    setting: str


def budget_refusal(budget: Budget, ceilings: Iterable[Ceiling]) -> str | None:
    """Why a channel's budget is refused: it would allow more than an operator's ceiling in
    the same unit (a day's budget above a month's ceiling too). None: it only lowers them."""
    for ceiling in ceilings:
        limit = ceiling.budget
        comparable = budget.unit is limit.unit and not (
            budget.period is Period.MONTH and limit.period is Period.DAY
        )
        if comparable and budget.amount > limit.amount:
            return (
                f"That budget is above the operator's ceiling for a channel, "
                f"{limit.describe()} (`{ceiling.setting}`): a channel's budget may lower it, "
                f"never raise it. Choose {limit.describe()} or less."
            )
    return None


def ceilings_note(budget: Budget, ceilings: Iterable[Ceiling]) -> str:
    """The operator's ceilings in another unit, which still apply beside the channel's."""
    others = [c.budget.describe() for c in ceilings if c.budget.unit is not budget.unit]
    if not others:
        return ""
    return " The operator's limit of " + " and ".join(others) + " still applies here."


class Place(Protocol):
    """Where a turn is answered (a stored conversation)."""

    team_id: str
    enterprise_id: str | None


class ToolsDefault(enum.Enum):
    """What a channel that chose nothing may use."""

    ALL = "all"
    """Single-token mode: the operator's own workspace, every server it may use."""
    NONE = "none"
    """OAuth mode: servers carry the operator's credentials; off until an admin turns them on."""


@dataclass(frozen=True)
class Asker:
    """Where a turn is answered and who asks: a team differing from the workspace's is a
    Slack Connect user of another organisation."""

    team_id: str
    enterprise_id: str | None = None
    user_teams: frozenset[str] = frozenset()

    @classmethod
    def of(cls, conversation: Place, user_teams: Iterable[str | None]) -> Asker:
        """A conversation's workspace, and its askers' teams (None: the workspace's own)."""
        teams = frozenset(team or conversation.team_id for team in user_teams)
        return cls(conversation.team_id, conversation.enterprise_id, teams)

    @property
    def external_teams(self) -> frozenset[str]:
        return frozenset(team for team in self.user_teams if team and team != self.team_id)


def available_servers(servers: Sequence[McpServer], asker: Asker) -> list[str]:
    """The labels of the servers a workspace may use at all: those without `teams`, and
    those naming the workspace or its Enterprise Grid organisation."""
    places = {asker.team_id, asker.enterprise_id} - {None}
    return [s.label for s in servers if s.teams is None or places & set(s.teams)]


def offered_servers(
    servers: Sequence[McpServer],
    *,
    choice: Collection[str] | None,
    default: ToolsDefault,
    asker: Asker,
) -> tuple[str, ...]:
    """The servers (labels) a turn is offered: of those available to the workspace, the
    channel's choice (None: the default); an asker from another organisation (Slack Connect)
    only gets servers whose `teams` name their team too."""
    available = available_servers(servers, asker)
    if choice is None:
        wanted = available if default is ToolsDefault.ALL else []
    else:
        wanted = [label for label in available if label in choice]
    external = asker.external_teams
    if external:
        teams_of = {s.label: set(s.teams or ()) for s in servers}
        wanted = [label for label in wanted if external <= teams_of[label]]
    return tuple(wanted)
