"""How the bot under test is given to Slack: a module of its own, light enough for the
conftest to import where no test runs (the process that only hands tests to the workers)."""

from __future__ import annotations

from enum import StrEnum


class SlackMode(StrEnum):
    """How the bot is given to Slack: one workspace's bot token, or the app's OAuth
    credentials with each workspace installed through the bot's own install pages, or (ORG)
    installed once for a whole Enterprise Grid organisation, the fake's workspace one of it."""

    TOKEN = "token"
    OAUTH = "oauth"
    ORG = "org"

    @property
    def oauth(self) -> bool:
        return self is not SlackMode.TOKEN


ORG_ID = "E0001"
"""The organisation the fake's workspace belongs to in `SlackMode.ORG`."""
