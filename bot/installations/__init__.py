"""Installations in many workspaces (OAuth mode): who the bot is in each workspace, with
which token, and how that token is kept fresh.

- `stores`: the installation store (tokens encrypted at rest) and the signed OAuth state store;
- `workspaces`: a workspace's token, looked up by team or organisation, cached, refreshed
  (bot/slack_tokens.py), and Bolt's `authorize` in OAuth mode;
- `oauth_flow`: the install pages; `uninstall`: what an uninstall ends and deletes.
"""

from bot.installations.keys import TeamAuth, TeamKey
from bot.installations.oauth_flow import authorize_url, build_oauth_flow
from bot.installations.stores import SignedStateStore
from bot.installations.uninstall import uninstalled
from bot.installations.workspaces import WorkspaceAuthorize, Workspaces
from bot.slack_tokens import NotInstalled

__all__ = [
    "NotInstalled",
    "SignedStateStore",
    "TeamAuth",
    "TeamKey",
    "WorkspaceAuthorize",
    "Workspaces",
    "authorize_url",
    "build_oauth_flow",
    "uninstalled",
]
