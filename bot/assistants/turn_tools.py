"""A turn's tool state: one typed object, owned by the turn (bot.turns.session.TurnSession),
handed to every backend call that needs it, and stored with the turn as one JSON document
(`dump`/`load`, the turns table's `tool_state`) so it survives a restart. What must not be
stored (the action token workspace search acts with, what a turn holds open at the API) is
held in memory only and dropped when the turn's session closes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.assistants.base import ToolContext, server_down_note


class Held(Protocol):
    """Something a turn holds open between two backend calls (the chat backend: the stream
    of an answer it asked for, or a tool-call loop to carry on)."""

    async def close(self) -> None: ...


@dataclass
class TurnTools:
    """What a turn's tools act with, the calls it made, the servers it went without, the
    approval decisions made for it and the outputs found before it paused."""

    context: ToolContext | None = None
    """Held in memory only (Slack's action token acts for the asking message)."""
    servers: tuple[str, ...] | None = None
    """The MCP servers a channel chose for the turn; None: all configured."""
    calls_made: int = 0
    unreachable: set[str] = field(default_factory=set)
    decisions: dict[str, bool] = field(default_factory=dict)
    """Yes or no per call id; they come with the click that resumes the turn (not stored)."""
    known_outputs: dict[str, str] = field(default_factory=dict)
    """Outputs of a round's calls found before the turn paused for an approval."""
    unsent_outputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Responses: the outputs of a response's calls until the response carrying them exists
    (in memory: losing them costs only running the tools again)."""
    unreached: bool = False
    """This turn's last attempt here could not reach the model (in memory)."""
    held: Held | None = None
    """What the turn holds open at the API between starting and following its run."""

    def left_out(self, labels: Iterable[str]) -> None:
        """The turn goes on without these tool servers (named above its answer)."""
        self.unreachable.update(labels)

    def may_call(self, max_calls: int) -> bool:
        """Tools are still offered: the turn has calls left under its cap."""
        return self.calls_made < max_calls

    def noted(self, text: str, *, first: Iterable[str] = ()) -> str:
        """The answer with a line above it for each server it went without."""
        notes = [*first, *(server_down_note(label) for label in sorted(self.unreachable))]
        return "\n\n".join([*notes, text]) if notes else text

    def take_held(self) -> Held | None:
        held, self.held = self.held, None
        return held

    async def close(self) -> None:
        """The turn's session ends: let go of what it holds open."""
        held = self.take_held()
        if held is not None:
            await held.close()

    def stored(self) -> dict[str, Any]:
        """What survives a restart."""
        return {
            "calls_made": self.calls_made,
            "unreachable": sorted(self.unreachable),
            "servers": None if self.servers is None else list(self.servers),
            "known_outputs": dict(self.known_outputs),
        }

    def dump(self) -> str:
        return json.dumps(self.stored(), sort_keys=True)

    @classmethod
    def from_stored(cls, stored: dict[str, Any], context: ToolContext | None) -> TurnTools:
        servers = stored.get("servers")
        return cls(
            context=context,
            servers=None if servers is None else tuple(servers),
            calls_made=int(stored.get("calls_made") or 0),
            unreachable=set(stored.get("unreachable") or ()),
            known_outputs=dict(stored.get("known_outputs") or {}),
        )

    @classmethod
    def load(cls, text: str | None, context: ToolContext | None = None) -> TurnTools:
        """The stored state (a fresh one when none is stored, or it cannot be read)."""
        try:
            stored = json.loads(text) if text else {}
        except ValueError:
            stored = {}
        return cls.from_stored(stored if isinstance(stored, dict) else {}, context)
