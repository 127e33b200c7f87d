"""What ships: the version a user can ask for, the changelog and licence beside it, the
container health check, and the compose scale-out check (deploy/compose-check.sh)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot import __version__
from bot.healthcheck import healthz_port
from bot.settings import SettingsError
from tests.harness import ROOT, free_port


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any of the bot's settings."""
    keep = {"PATH", "PYTHONPATH", "HOME", "LANG", "VIRTUAL_ENV"}
    return {**{k: v for k, v in os.environ.items() if k in keep}, **extra}


def run_python(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], env=env, cwd="/tmp", capture_output=True, text=True, timeout=60
    )


def test_version_needs_no_settings() -> None:
    result = run_python("-m", "bot", "--version", env=clean_env())
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"slack-assistant-bot {__version__}\n",
        "",
    )


def test_the_version_is_kept_in_one_place_with_a_changelog_entry_and_a_licence() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bot.__version__"}
    major, minor, patch = __version__.split(".")
    assert all(part.isdigit() for part in (major, minor, patch)), "semantic version"
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{__version__}]" in changelog
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


@pytest.mark.parametrize(
    ("env", "port"),
    [
        ({}, 3000),  # HTTP mode: PORT, default 3000
        ({"PORT": "8080"}, 8080),
        ({"PORT": "8080", "HEALTH_PORT": "9000"}, 8080),  # HEALTH_PORT is for Socket Mode
        ({"SLACK_APP_TOKEN": "xapp-1"}, None),  # Socket Mode with no port: nothing to ask
        ({"SLACK_APP_TOKEN": "xapp-1", "PORT": "3000"}, 3000),
        ({"SLACK_APP_TOKEN": "xapp-1", "PORT": "3000", "HEALTH_PORT": "9000"}, 9000),
        ({"SLACK_APP_TOKEN": " ", "PORT": "3000", "HEALTH_PORT": "9000"}, 3000),
    ],
)
def test_the_health_check_asks_the_port_the_bot_serves_healthz_on(
    env: dict[str, str], port: int | None
) -> None:
    assert healthz_port(env) == port


def test_a_bad_port_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="PORT must be a whole number"):
        healthz_port({"PORT": "http"})


@pytest.fixture
async def healthz() -> AsyncIterator[tuple[int, list[int]]]:
    """A stand-in for the bot's /healthz: answers with the status at the end of the list."""
    statuses = [200]

    async def handler(_: web.Request) -> web.Response:
        return web.json_response({"ok": statuses[-1] == 200}, status=statuses[-1])

    app = web.Application()
    app.router.add_get("/healthz", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, statuses
    finally:
        await runner.cleanup()


async def test_the_health_check_command_exits_by_what_healthz_answers(
    healthz: tuple[int, list[int]],
) -> None:
    port, statuses = healthz
    socket_mode = clean_env(SLACK_APP_TOKEN="xapp-1", PORT="1", HEALTH_PORT=str(port))
    healthy = await _run_healthcheck(socket_mode)
    assert (healthy.returncode, healthy.stderr) == (0, "")
    statuses.append(503)
    unhealthy = await _run_healthcheck(clean_env(PORT=str(port)))
    assert unhealthy.returncode == 1
    assert unhealthy.stderr == f"unhealthy: http://127.0.0.1:{port}/healthz: HTTP 503\n"
    nothing = await _run_healthcheck(clean_env(SLACK_APP_TOKEN="xapp-1"))
    assert nothing.returncode == 1
    assert "set HEALTH_PORT" in nothing.stderr


async def _run_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_python, "-m", "bot.healthcheck", env=env)


@pytest.mark.slow
def test_compose_runs_two_replicas_that_take_turns() -> None:
    if os.environ.get("RUN_COMPOSE_CHECK") != "1":
        pytest.skip(
            "builds the image and runs compose.yml (minutes): set RUN_COMPOSE_CHECK=1 where a "
            "container engine runs (docker compose or podman-compose)"
        )
    result = subprocess.run(
        [str(ROOT / "deploy" / "compose-check.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode == 77:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: " in result.stdout
