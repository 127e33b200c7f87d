"""The install pages a workspace admin sees in OAuth mode (issue 20).

The pages themselves are pure functions (`bot.install_pages`), tested as tables here; then
served by the real bot, through Bolt's OAuth flow, to plain HTTP and to a real headless
Chromium that clicks Add to Slack, passes the fake Slack's consent page and lands on the
installed page. `SCREENSHOTS=docs/img` keeps the browser's pictures (install.png,
installed.png, install-failed.png) for the docs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.install_pages import (
    SCOPE_REASONS,
    UNKNOWN_SCOPE_REASON,
    InstallFailure,
    failed_page,
    failure_of,
    install_page,
    installed_page,
    scope_reasons,
    storage_text,
)
from bot.settings_parse import DEFAULT_SCOPES
from tests.browser import BROWSER_MISSING, chromium_binary, headless_page
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest, SlackMode, bot_env

AUTHORIZE = "https://slack.com/oauth/v2/authorize?client_id=1.2&scope=chat:write&state=s1"


@pytest.mark.parametrize(
    ("reason", "failure"),
    [
        ("access_denied", InstallFailure.CANCELLED),
        ("invalid_browser", InstallFailure.OTHER_BROWSER),
        ("invalid_state", InstallFailure.EXPIRED),
        ("missing_code", InstallFailure.NOT_CONFIRMED),
        ("invalid_code", InstallFailure.NOT_CONFIRMED),
        ("storage_error", InstallFailure.NOT_SAVED),
        ("invalid_team_for_non_distributed_app", InstallFailure.SLACK_REFUSED),
        ("", InstallFailure.SLACK_REFUSED),
    ],
)
def test_each_failure_is_told_in_plain_words(reason: str, failure: InstallFailure) -> None:
    assert failure_of(reason) is failure
    page = failed_page(reason=reason)
    assert "Oops" not in page and "Something Went Wrong" not in page
    assert 'href="/slack/install"' in page  # start again


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        ("invalid_state", True),
        ("access_denied", True),
        ("Call 555-0100 to finish your install", False),  # anyone can write ?error=…
        ("x" * 65, False),
    ],
)
def test_only_an_error_code_is_repeated_on_the_page(reason: str, shown: bool) -> None:
    assert (f"<code>{reason}</code>" in failed_page(reason=reason)) is shown


def test_every_scope_the_bot_asks_for_says_why() -> None:
    assert set(DEFAULT_SCOPES) <= set(SCOPE_REASONS)
    assert all(reason != UNKNOWN_SCOPE_REASON for _, reason in scope_reasons(DEFAULT_SCOPES))
    assert scope_reasons(["chat:write", "reactions:write"]) == [
        ("chat:write", SCOPE_REASONS["chat:write"]),
        ("reactions:write", UNKNOWN_SCOPE_REASON),
    ]


@pytest.mark.parametrize(
    ("delete_on_uninstall", "said"),
    [(True, "deleted when you uninstall"), (False, "stops it but does not delete them")],
)
def test_what_is_stored_follows_the_uninstall_setting(delete_on_uninstall: bool, said: str) -> None:
    assert said in storage_text(delete_on_uninstall=delete_on_uninstall)
    page = install_page(
        authorize_url=AUTHORIZE, scopes=DEFAULT_SCOPES, delete_on_uninstall=delete_on_uninstall
    )
    assert said in page and "docs/security.md" in page


@pytest.mark.parametrize(
    "page",
    [
        install_page(authorize_url=AUTHORIZE, scopes=DEFAULT_SCOPES, delete_on_uninstall=False),
        installed_page(workspace="Acme", org_wide=False),
        failed_page(reason="access_denied"),
    ],
)
def test_pages_load_nothing_from_elsewhere(page: str) -> None:
    """No images, fonts, scripts or style sheets from a CDN: a page behind a proxy that
    blocks the internet looks the same. The only external address is Slack's consent page."""
    assert "<script" not in page and "<img" not in page and '<link rel="stylesheet"' not in page
    assert "@import" not in page and "url(" not in page
    addresses = re.findall(r'(?:href|src)="(https?://[^"]*)"', page)
    assert all(address.startswith("https://slack.com/oauth/v2/authorize") for address in addresses)


@pytest.mark.parametrize(
    ("page", "raw", "escaped"),
    [
        (
            installed_page(workspace='<script>alert("x")</script> & Co', org_wide=False),
            "<script>alert",
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co",
        ),
        (
            install_page(
                authorize_url='https://slack.com/a?x=1&y="><b>',
                scopes=["a<b>"],
                delete_on_uninstall=False,
            ),
            '"><b>',
            "https://slack.com/a?x=1&amp;y=&quot;&gt;&lt;b&gt;",
        ),
        (failed_page(reason="<img src=x onerror=alert(1)>"), "<img src=x", "Slack stopped"),
        (
            failed_page(reason="x", retry_url='/slack/install"><i>'),
            '"><i>',
            "/slack/install&quot;&gt;",
        ),
    ],
)
def test_everything_interpolated_is_escaped(page: str, raw: str, escaped: str) -> None:
    assert raw not in page
    assert escaped in page


@pytest.mark.parametrize(
    ("workspace", "org_wide", "said"),
    [
        ("Acme", False, "is now in Acme"),
        ("Acme Org", True, "Everyone in the organisation"),
        (None, False, "is now in your workspace"),
    ],
)
def test_the_installed_page_names_the_workspace_and_the_next_steps(
    workspace: str | None, org_wide: bool, said: str
) -> None:
    page = installed_page(workspace=workspace, org_wide=org_wide)
    assert said in page
    for step in ("/invite @Assistant", "<em>Messages</em> tab", "/assistant help"):
        assert step in page


# Served by the bot ------------------------------------------------------------------------


def oauth_env(
    slack: FakeSlack, openai: FakeOpenAI, database_url: str, **extra: str
) -> dict[str, str]:
    return bot_env(
        slack=slack,
        openai=openai,
        database_url=database_url,
        assistant_api="responses",
        slack_mode=SlackMode.OAUTH,
        **extra,
    )


async def test_the_bot_serves_its_own_install_page_and_keeps_the_state_cookie(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    env = oauth_env(
        slack, openai_fake, f"sqlite:///{tmp_path}/bot.db", DELETE_DATA_ON_UNINSTALL="true"
    )
    async with BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot:
        base = bot.events_url.removesuffix("/slack/events")
        async with bot.http.get(f"{base}/slack/install") as page:
            body = await page.text()
            assert page.status == 200
            assert page.headers["Content-Type"].startswith("text/html")
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]
            assert page.headers["Set-Cookie"].startswith("slack-app-oauth-state=")
        assert "Slack App Installation" not in body and "slack-edge.com" not in body
        assert "Add Assistant to your Slack workspace" in body
        assert "deleted when you uninstall" in body
        for scope in DEFAULT_SCOPES:
            assert f"<code>{scope}</code>" in body
        # Slack sends the admin back with an error when they cancel on its consent page.
        async with bot.http.get(
            f"{base}/slack/oauth_redirect", params={"error": "access_denied", "state": "s"}
        ) as back:
            body = await back.text()
            assert back.status == 200
            assert "slack-app-oauth-state=deleted;" in back.headers["Set-Cookie"]  # cleared
        assert "The install was cancelled" in body and "Oops" not in body
        assert 'href="/slack/install"' in body


# In a real browser --------------------------------------------------------------------------

BROWSER = chromium_binary()
needs_browser = pytest.mark.skipif(BROWSER is None, reason=BROWSER_MISSING)


def screenshots(tmp_path: Path) -> Path:
    """Where the pictures go: $SCREENSHOTS (docs/img to refresh the docs), else the test's
    own folder."""
    return Path(os.environ.get("SCREENSHOTS") or tmp_path)


def local_only(requests: list[str], *hosts: str) -> list[str]:
    """The requests that went anywhere but the bot and (the fake) Slack."""
    return [
        url for url in requests if not url.startswith("data:") and urlsplit(url).netloc not in hosts
    ]


@needs_browser
async def test_an_admin_installs_through_the_pages_in_a_real_browser(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    assert BROWSER is not None
    slack.add_team("T0009", name="Acme & Co")
    env = oauth_env(slack, openai_fake, f"sqlite:///{tmp_path}/bot.db")
    async with (
        BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot,
        headless_page(BROWSER) as page,
    ):
        base = bot.events_url.removesuffix("/slack/events")
        slack.redirect_uri = f"{base}/slack/oauth_redirect"
        await page.open(f"{base}/slack/install?team=T0009")
        text = await page.text()
        assert "Add Assistant to your Slack workspace" in text
        assert "chat:write to post its answers" in text
        assert "Add to Slack" in (await page.links())
        await page.screenshot(screenshots(tmp_path) / "install.png")

        await page.click("a.button")  # → Slack's consent page → back to the bot
        text = await page.text()
        assert "Assistant is now in Acme & Co" in text, text
        assert "/assistant help" in text
        assert await page.url() != f"{base}/slack/install"
        assert len(slack.calls_to("oauth.v2.access")) == 1
        assert bot.bot is not None and bot.bot.workspaces is not None
        found = await bot.bot.workspaces.store.async_find_installation(
            enterprise_id=None, team_id="T0009"
        )
        assert found is not None and found.team_name == "Acme & Co"
        await page.screenshot(screenshots(tmp_path) / "installed.png")
        api = urlsplit(slack.api_url).netloc
        assert local_only(page.requests, urlsplit(base).netloc, api) == []


@needs_browser
async def test_a_cancelled_install_says_so_and_offers_to_start_again_in_a_real_browser(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    assert BROWSER is not None
    slack.approve_installs = False  # the admin presses Cancel on Slack's consent page
    env = oauth_env(slack, openai_fake, f"sqlite:///{tmp_path}/bot.db")
    async with (
        BotUnderTest.running(env, slack=slack, openai=openai_fake) as bot,
        headless_page(BROWSER) as page,
    ):
        base = bot.events_url.removesuffix("/slack/events")
        slack.redirect_uri = f"{base}/slack/oauth_redirect"
        await page.open(f"{base}/slack/install")
        await page.click("a.button")
        text = await page.text()
        assert "The install was cancelled" in text and "Oops" not in text
        assert (await page.links())["Start the install again"] == f"{base}/slack/install"
        assert slack.calls_to("oauth.v2.access") == []
        await page.screenshot(screenshots(tmp_path) / "install-failed.png")

        await page.click("a.button")  # start again
        assert "Add Assistant to your Slack workspace" in await page.text()
