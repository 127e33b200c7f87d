"""`python -m bot` keeps what its imports built out of the garbage collector's way (the tests
start the bot about a hundred times, and the collections while importing and at exit were a
third of each start's CPU), and the collector is on again once the bot is ready."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

import bot.logs
import bot.runtime
import bot.settings
from bot.__main__ import _serve
from bot.settings import Settings, load_settings

ENV = {
    "SLACK_BOT_TOKEN": "xoxb-1-gc",
    "SLACK_SIGNING_SECRET": "s" * 32,
    "OPENAI_API_KEY": "sk-gc",
    "ASSISTANT_API": "responses",
    "DATABASE_URL": "sqlite:///gc.db",
}


@pytest.fixture
def collector_restored() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


def test_the_bot_runs_with_the_collector_on_and_the_imports_frozen(
    monkeypatch: pytest.MonkeyPatch, collector_restored: None
) -> None:
    seen: dict[str, object] = {}

    async def serve(settings: Settings, *, on_ready: Callable[[], None], **_: object) -> None:
        seen.update(starting=gc.isenabled())
        on_ready()
        seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count())

    monkeypatch.setattr(bot.settings, "load_settings", lambda: load_settings(ENV, dotenv_path=None))
    monkeypatch.setattr(bot.logs, "configure", lambda *_, **__: None)
    monkeypatch.setattr(bot.runtime, "serve", serve)
    gc.unfreeze()

    assert _serve() == 0
    assert seen["starting"] is False
    assert seen["enabled"] is True
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 10_000
