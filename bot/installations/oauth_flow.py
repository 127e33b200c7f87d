"""The install pages: `GET /slack/install` and `GET /slack/oauth_redirect` (OAuth mode)."""

from __future__ import annotations

import logging
from urllib.parse import urljoin

from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.web.async_client import AsyncWebClient

from bot.installations.stores import STATE_EXPIRATION_S, SignedStateStore
from bot.installations.workspaces import Workspaces
from bot.oauth_pages import INSTALL_CALLBACKS, InstallPagesFlow

log = logging.getLogger(__name__)


def authorize_url(slack_api_url: str) -> str:
    """Slack's consent page beside its Web API (https://slack.com/api/ →
    https://slack.com/oauth/v2/authorize), so SLACK_API_URL moves both."""
    return urljoin(slack_api_url, "../oauth/v2/authorize")


def build_oauth_flow(
    workspaces: Workspaces,
    *,
    client: AsyncWebClient,
    slack_api_url: str,
    scopes: tuple[str, ...],
    state_secret: str,
    client_secret: str,
    redirect_uri: str | None,
    delete_on_uninstall: bool = False,
) -> AsyncOAuthFlow:
    """`GET /slack/install` (the page with the Add to Slack button) and
    `GET /slack/oauth_redirect` (Slack sends the installer back with a code, exchanged at
    `oauth.v2.access` through `client`, so SLACK_API_URL is honoured)."""
    settings = AsyncOAuthSettings(
        client_id=workspaces.client_id,
        client_secret=client_secret,
        scopes=list(scopes),
        user_scopes=[],
        redirect_uri=redirect_uri,
        authorization_url=authorize_url(slack_api_url),
        installation_store=workspaces.store,
        state_store=SignedStateStore(workspaces.engine, secret=state_secret),
        state_expiration_seconds=STATE_EXPIRATION_S,
        callback_options=INSTALL_CALLBACKS,
        logger=log,
    )
    return InstallPagesFlow(
        client=client, logger=log, settings=settings, delete_on_uninstall=delete_on_uninstall
    )
