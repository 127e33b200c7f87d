"""Our install pages in Bolt's OAuth flow, in place of its stock ones.

Bolt still does everything that keeps an install safe (the state it issues, its cookie, the
check that the admin comes back in the same browser, the code exchange); only the HTML it
answers with is ours (`bot.install_pages`).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.oauth.async_callback_options import (
    AsyncCallbackOptions,
    AsyncFailureArgs,
    AsyncSuccessArgs,
)
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.install_pages import failed_page, install_page, installed_page

log = logging.getLogger(__name__)

# The pages load nothing from anywhere (styles are inline) and may not be framed.
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}


class InstallPagesFlow(AsyncOAuthFlow):
    """Bolt's OAuth flow with our install page (`GET /slack/install`)."""

    def __init__(self, *, delete_on_uninstall: bool, **flow: Any) -> None:
        super().__init__(**flow)
        self.delete_on_uninstall = delete_on_uninstall

    async def build_install_page_html(self, url: str, request: AsyncBoltRequest) -> str:
        return install_page(
            authorize_url=url,
            scopes=self.settings.scopes or [],
            delete_on_uninstall=self.delete_on_uninstall,
        )

    async def append_set_cookie_headers(
        self, headers: dict[str, Any], set_cookie_value: str | None
    ) -> dict[str, Any]:
        headers.update(PAGE_HEADERS)
        extended: dict[str, Any] = await super().append_set_cookie_headers(
            headers, set_cookie_value
        )
        return extended


async def _installed(args: AsyncSuccessArgs) -> BoltResponse:
    installation = args.installation
    org_wide = bool(installation.is_enterprise_install)
    name = installation.enterprise_name if org_wide else installation.team_name
    return _page_response(200, installed_page(workspace=name, org_wide=org_wide), args)


async def _failed(args: AsyncFailureArgs) -> BoltResponse:
    log.info("an install did not finish: %r", args.reason[:100])
    page = failed_page(reason=args.reason, retry_url=args.settings.install_path)
    return _page_response(args.suggested_status_code, page, args)


def _page_response(
    status: int, body: str, args: AsyncSuccessArgs | AsyncFailureArgs
) -> BoltResponse:
    # As Bolt's own pages do: the state cookie has done its job either way.
    cookie = args.settings.state_utils.build_set_cookie_for_deletion()
    return BoltResponse(status=status, body=body, headers={**PAGE_HEADERS, "Set-Cookie": cookie})


INSTALL_CALLBACKS = AsyncCallbackOptions(success=_installed, failure=_failed)
"""The pages after Slack sends the admin back: installed, or why not."""
