"""Every install mode end to end (issue 17): what breaks on Enterprise Grid and with token
rotation, and what an operator sees when a workspace cannot be answered.

The rest of the end-to-end suite runs its tools, approvals, search, feedback and admin tests
in OAuth mode and as an org-wide install too (`both_slack_modes`, tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from bot.crypto import TokenCipher
from bot.installations import NotInstalled, TeamKey, Workspaces
from bot.metrics import REGISTRY
from bot.slack.client import make_web_client
from bot.slack_tokens import RefreshRefused
from bot.store.db import create_engine, migrate
from bot.store.inbox import NewMessage
from bot.store.repository import Store
from tests.fakes.events import post_form, slash_command
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import SIGNING_SECRET, TOKEN_KEY, BotUnderTest, install
from tests.test_installs import an_org, oauth_bot, store_install


def counted(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"{metric}_total", labels) or 0.0


def errors(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and text in r.getMessage()
    ]


# Admins per workspace ---------------------------------------------------------------------


async def command_in(bot: BotUnderTest, text: str, *, team: str, channel: str) -> str:
    fields = slash_command(
        text=text, user="UALICE", channel=channel, team_id=team, enterprise_id="E0001"
    )
    status, body = await post_form(bot.http, bot.events_url, fields, signing_secret=SIGNING_SECRET)
    assert status == 200
    return str(json.loads(body)["text"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_admin_of_one_org_workspace_is_not_an_admin_of_another(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str
) -> None:
    """On Enterprise Grid, Alice administers workspace T0101 and is a member of T0102: her
    admin rights in the one are not remembered for the other."""
    an_org(slack)
    slack.make_admin("UALICE", "T0101")
    async with oauth_bot(slack, openai_fake, database_url) as bot:
        await install(bot, "T0101")
        await install(bot, "T0102")
        done = await command_in(bot, "off", team="T0101", channel="C0101")
        assert "off in this channel" in done
        refused = await command_in(bot, "off", team="T0102", channel="C0102")
        assert "only workspace admins" in refused


# No token for a turn ------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_turn_that_cannot_get_a_token_is_an_error_an_operator_sees(
    slack: FakeSlack, openai_fake: FakeOpenAI, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored message of a workspace with no installation (removed behind the bot's back):
    not answered, said at ERROR and in `bot_turns_without_token`, tried again a few times
    (a reinstall would mend it), then given up: the bot does not loop on it."""
    caplog.set_level(logging.INFO)
    before = counted("bot_turns_without_token", reason="not_installed")
    async with oauth_bot(slack, openai_fake, database_url, RETRY_BASE_S="0") as bot:
        await install(bot, "T0001")
        assert bot.bot is not None
        message = NewMessage("T0999", "C0999", "1.0", "1.0", "UALICE", "anyone?")
        await Store(bot.bot.engine).inbox.record_message(message)
        await slack.wait_for(lambda: bool(errors(caplog, "no installation for team T0999")))
        assert counted("bot_turns_without_token", reason="not_installed") >= before + 1
        await bot.idle(timeout=60)
        assert not slack.bot_replies("C0999", "1.0")


# Token rotation -----------------------------------------------------------------------------


def rotating_workspaces(slack: FakeSlack, engine: Any, *, later: float) -> Workspaces:
    """A process's `Workspaces` whose clock is `later` seconds ahead (the token expiring)."""
    return Workspaces(
        engine,
        client_id=slack.client_id,
        client_secret=slack.client_secret,
        make_client=lambda token: make_web_client(token=token, base_url=slack.api_url),
        clock=lambda: time.time() + later,
        cipher=TokenCipher([TOKEN_KEY]),
    )


def fail_once(engine: Any, starting: str) -> list[str]:
    """The first statement starting with `starting` fails as a lost connection makes it."""
    failed: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(starting) and "bot_token=" in statement and not failed:
            failed.append(statement)
            raise OperationalError(statement, {}, ConnectionError("connection lost"))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return failed


async def test_a_refreshed_token_is_kept_when_storing_it_fails_once(
    slack: FakeSlack, database_url: str
) -> None:
    """Slack has rotated the token (the old refresh token is spent) when the database fails
    to take the new one: it is stored all the same, and another process uses it."""
    from bot.settings import database_url as async_url

    slack.token_rotation = True
    later = slack.token_lifetime_s - 300
    engine = create_engine(async_url(database_url))
    await migrate(engine)
    try:
        first = rotating_workspaces(slack, engine, later=later)
        await store_install(first, slack, "T0001")
        failed = fail_once(engine, "UPDATE slack_bots")
        auth = await first.auth_for(TeamKey("T0001"))
        assert failed and len(slack.refreshes()) == 1
        other_process = rotating_workspaces(slack, engine, later=later)
        found = await other_process.auth_for(TeamKey("T0001"))
        assert found.token == auth.token
        assert (await found.client.auth_test())["ok"]
        assert len(slack.refreshes()) == 1
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_refused_refresh_token_is_an_error_not_an_uninstall(
    slack: FakeSlack, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.settings import database_url as async_url

    slack.token_rotation = True
    engine = create_engine(async_url(database_url))
    await migrate(engine)
    before = counted("bot_token_refreshes", outcome="refused")
    try:
        workspaces = rotating_workspaces(slack, engine, later=slack.token_lifetime_s - 300)
        await store_install(workspaces, slack, "T0001")
        slack.refuse_refresh_tokens("T0001")
        with pytest.raises(RefreshRefused) as refused:
            await workspaces.auth_for(TeamKey("T0001"))
        assert not isinstance(refused.value, NotInstalled)
        [said] = errors(caplog, "invalid_refresh_token")
        assert "T0001" in said and "reinstalled" in said
        assert counted("bot_token_refreshes", outcome="refused") == before + 1
    finally:
        await engine.dispose()


async def test_no_transaction_is_held_while_slack_is_asked_for_a_new_token(
    slack: FakeSlack, database_url: str
) -> None:
    """While one process waits on Slack for the new token, no transaction is open (one
    open on PostgreSQL is ended by `idle_in_transaction_session_timeout` after 15 s, and
    its commit lost; on SQLite it would stop every other write): the other process writes
    meanwhile, then uses the one new token."""
    from bot.settings import database_url as async_url

    slack.token_rotation = True
    url = async_url(database_url)
    engines = [create_engine(url), create_engine(url)]
    await migrate(engines[0])
    later = slack.token_lifetime_s - 300
    try:
        made = [rotating_workspaces(slack, engine, later=later) for engine in engines]
        await store_install(made[0], slack, "T0001")
        slack.hold_next("oauth.v2.access", seconds=1.5)
        refreshing = asyncio.create_task(made[0].auth_for(TeamKey("T0001")))
        await slack.wait_for(lambda: bool(slack.refreshes()))
        if engines[1].dialect.name == "postgresql":
            async with engines[1].connect() as connection:
                open_transactions = await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND state LIKE 'idle in transaction%'"
                    )
                )
            assert open_transactions == 0
        message = NewMessage("T0001", "C0001", "1.0", "1.0", "UALICE", "hi")
        await Store(engines[1]).inbox.record_message(message)
        assert not refreshing.done()
        first = await refreshing
        second = await made[1].auth_for(TeamKey("T0001"))
        assert first.token == second.token and len(slack.refreshes()) == 1
    finally:
        for engine in engines:
            await engine.dispose()
