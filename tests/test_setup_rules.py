"""Issue 20's first-run rules as tables: missing settings, URL schemes, Azure, `/v1`, ports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.preflight import StartupError, check_ports
from bot.settings import SettingsError, load_settings
from bot.setup_rules import (
    azure_api_version,
    azure_problem,
    azure_version_has,
    missing_settings,
    scheme_problem,
    v1_suggestion,
)

ROOT = Path(__file__).resolve().parent.parent
BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "OPENAI_API_KEY": "k"}


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "OPENAI_API_KEY"]),
        (BASE, []),
        ({"SLACK_APP_TOKEN": "xapp-1"}, ["SLACK_BOT_TOKEN", "OPENAI_API_KEY"]),
        ({"SLACK_CLIENT_ID": "1.2"}, ["SLACK_SIGNING_SECRET", "OPENAI_API_KEY"]),
        ({**BASE, "OPENAI_API_KEY": " "}, ["OPENAI_API_KEY"]),
        ({**BASE, "OPENAI_API_KEY": "", "ASSISTANT_API": "chat"}, []),
        ({**BASE, "ASSISTANT_API": "threads"}, ["OPENAI_ASSISTANT_ID"]),
        (
            {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "ASSISTANT_API": "threads"},
            ["OPENAI_API_KEY", "OPENAI_ASSISTANT_ID"],
        ),
        (
            {**BASE, "OPENAI_API_KEY": "", "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com"},
            ["AZURE_OPENAI_API_KEY (or AZURE_OPENAI_AUTH=entra)"],
        ),
        (
            {
                **BASE,
                "OPENAI_API_KEY": "",
                "ASSISTANT_API": "chat",
                "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
            },
            ["AZURE_OPENAI_API_KEY (or AZURE_OPENAI_AUTH=entra)"],
        ),
        (
            {
                **BASE,
                "OPENAI_API_KEY": "",
                "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
                "AZURE_OPENAI_AUTH": "entra",
            },
            [],
        ),
    ],
)
def test_missing_settings(env: dict[str, str], missing: list[str]) -> None:
    assert missing_settings(env) == missing


def test_all_missing_settings_are_one_line_pointing_to_env_example() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({}, dotenv_path=None)
    assert str(caught.value) == (
        "missing settings: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, OPENAI_API_KEY — copy "
        ".env.example to .env and fill them in"
    )
    assert (ROOT / ".env.example").is_file()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://api.openai.com/v1", None),
        ("http://127.0.0.1:8000/v1", None),
        (
            "api.openai.com/v1",
            "OPENAI_BASE_URL api.openai.com/v1 has no http:// or https:// scheme: did you mean "
            "https://api.openai.com/v1?",
        ),
        (
            "localhost:11434/v1",
            "OPENAI_BASE_URL localhost:11434/v1 has no http:// or https:// scheme: did you mean "
            "https://localhost:11434/v1?",
        ),
        (
            "htps://x/v1",
            "OPENAI_BASE_URL htps://x/v1 has no http:// or https:// scheme: did you mean "
            "https://x/v1?",
        ),
    ],
)
def test_scheme_problem(url: str, problem: str | None) -> None:
    assert scheme_problem("OPENAI_BASE_URL", url) == problem


@pytest.mark.parametrize(
    ("base_url", "suggestion"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1"),
        ("https://proxy.example.com/openai", "https://proxy.example.com/openai/v1"),
        ("https://api.openai.com/v1", None),
        ("http://host/api/v1/", None),
        ("https://generativelanguage.googleapis.com/v1beta/openai/", None),
    ],
)
def test_v1_suggestion(base_url: str, suggestion: str | None) -> None:
    assert v1_suggestion(base_url) == suggestion


@pytest.mark.parametrize(
    ("api", "version", "has"),
    [
        ("chat", "2024-10-21", True),
        ("chat", "2023-05-15", True),
        ("responses", "2024-10-21", False),
        ("responses", "2025-01-01-preview", False),
        ("responses", "2025-03-01-preview", True),
        ("responses", "2025-04-01-preview", True),
        ("threads", "2024-10-21", False),
        ("threads", "2024-05-01-preview", True),
        ("threads", "2024-02-01", False),
        ("responses", "preview", True),  # not a dated version: Azure itself is asked at start
    ],
)
def test_azure_version_has(api: str, version: str, has: bool) -> None:
    assert azure_version_has(api, version) is has


@pytest.mark.parametrize(
    ("api", "configured", "version"),
    [
        ("chat", None, "2024-10-21"),
        ("responses", None, "2025-04-01-preview"),
        ("threads", None, "2025-04-01-preview"),
        ("chat", "2025-01-01-preview", "2025-01-01-preview"),
    ],
)
def test_azure_api_version(api: str, configured: str | None, version: str) -> None:
    assert azure_api_version(api, configured) == version


ENDPOINT = "https://r.openai.azure.com"


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({}, None),
        ({"endpoint": ENDPOINT}, None),
        ({"endpoint": ENDPOINT, "assistant_api": "chat", "api_version": "2024-10-21"}, None),
        ({"endpoint": ENDPOINT, "auth": "entra"}, None),
        ({"auth": "entra"}, "AZURE_OPENAI_AUTH is set but AZURE_OPENAI_ENDPOINT is not"),
        ({"endpoint": ENDPOINT, "auth": "token"}, "AZURE_OPENAI_AUTH must be 'key' or 'entra'"),
        (
            {"endpoint": ENDPOINT, "base_url": "https://api.openai.com/v1"},
            "AZURE_OPENAI_ENDPOINT and OPENAI_BASE_URL are both set",
        ),
        (
            {"endpoint": "r.openai.azure.com"},
            "AZURE_OPENAI_ENDPOINT r.openai.azure.com has no http:// or https:// scheme",
        ),
        (
            {"endpoint": ENDPOINT, "api_version": "2024-10-21"},
            "ASSISTANT_API=responses on Azure needs a preview API version from 2025-03-01 on "
            "(OPENAI_API_VERSION is 2024-10-21)",
        ),
        (
            {"endpoint": ENDPOINT, "assistant_api": "threads", "api_version": "2024-10-21"},
            "ASSISTANT_API=threads on Azure needs a preview API version from 2024-02-15 on",
        ),
    ],
)
def test_azure_problem(given: dict[str, str], problem: str | None) -> None:
    found = azure_problem(
        endpoint=given.get("endpoint"),
        base_url=given.get("base_url"),
        assistant_api=given.get("assistant_api", "responses"),
        api_version=given.get("api_version"),
        auth=given.get("auth"),
    )
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


@pytest.mark.parametrize(
    ("env", "clash"),
    [
        ({"PORT": "3000", "METRICS_PORT": "3000"}, "METRICS_PORT 3000 is also PORT"),
        ({"PORT": "3000", "METRICS_PORT": "9100"}, None),
        (
            {"SLACK_APP_TOKEN": "xapp-1", "PORT": "8080", "METRICS_PORT": "8080"},
            "METRICS_PORT 8080 is also HEALTH_PORT or PORT",
        ),
        (
            {"SLACK_APP_TOKEN": "xapp-1", "HEALTH_PORT": "8081", "METRICS_PORT": "8081"},
            "METRICS_PORT 8081 is also HEALTH_PORT or PORT",
        ),
        ({"SLACK_APP_TOKEN": "xapp-1", "METRICS_PORT": "3000"}, None),  # no port served
    ],
)
def test_metrics_port_of_its_own(env: dict[str, str], clash: str | None) -> None:
    settings = load_settings({**BASE, **env}, dotenv_path=None)
    if clash is None:
        check_ports(settings)
        return
    with pytest.raises(StartupError, match=re.escape(clash)):
        check_ports(settings)


def test_agent_view_is_the_default_as_in_every_manifest() -> None:
    manifests = sorted(ROOT.glob("manifest*.yml"))
    assert len(manifests) == 3
    for manifest in manifests:
        text = manifest.read_text(encoding="utf-8")
        assert re.search(r"^  agent_view:$", text, re.MULTILINE), manifest.name
    assert load_settings(BASE, dotenv_path=None).agent_view is True
    pane = load_settings({**BASE, "SLACK_AGENT_VIEW": "false"}, dotenv_path=None)
    assert pane.agent_view is False


def test_socket_mode_manifest_needs_no_public_url() -> None:
    socket = (ROOT / "manifest.socket.yml").read_text(encoding="utf-8")
    http = (ROOT / "manifest.yml").read_text(encoding="utf-8")
    assert "socket_mode_enabled: true" in socket
    body = socket[socket.index("display_information:") :]
    assert "YOUR-HOST" not in body and "url:" not in body
    # The same app otherwise: scopes and events as the HTTP manifest's.
    lines = {line.strip() for line in body.splitlines() if line.strip().startswith("- ")}
    assert lines == {
        line.strip()
        for line in http[http.index("display_information:") :].splitlines()
        if line.strip().startswith("- ")
    }
