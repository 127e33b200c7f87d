"""Pure rules for a first run: which required settings are missing, whether a URL
has its scheme, what an Azure OpenAI configuration lacks, and where a base URL's `/v1` went.

No I/O: `bot.settings` turns the problems found at settings time into `SettingsError`, and
`bot.preflight` uses the rest at start. Each function is table-tested (tests/test_setup_rules.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

AZURE_GA_API_VERSION = "2024-10-21"
AZURE_PREVIEW_API_VERSION = "2025-04-01-preview"
AZURE_AUTH_VALUES = ("key", "entra")

_AZURE_VERSION = re.compile(r"(\d{4}-\d{2}-\d{2})(-preview)?")
_FIRST_WITH = {"responses": ("2025-03-01", True), "threads": ("2024-02-15", True)}
"""The first Azure API version with each backend's API, and whether only previews have it.
Chat Completions is in every version."""


def missing_settings(env: Mapping[str, str]) -> list[str]:
    """The required settings that are not set, in the order .env.example lists them."""

    def given(name: str) -> bool:
        return bool(env.get(name, "").strip())

    oauth = any(given(n) for n in ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_STATE_SECRET"))
    api = env.get("ASSISTANT_API", "").strip() or (
        "threads" if given("OPENAI_ASSISTANT_ID") else "responses"
    )
    missing: list[str] = []
    if not oauth and not given("SLACK_BOT_TOKEN"):
        missing.append("SLACK_BOT_TOKEN")
    if not given("SLACK_SIGNING_SECRET") and not given("SLACK_APP_TOKEN"):
        missing.append("SLACK_SIGNING_SECRET")
    has_key = given("OPENAI_API_KEY") or given("AZURE_OPENAI_API_KEY")
    if given("AZURE_OPENAI_ENDPOINT"):
        entra = env.get("AZURE_OPENAI_AUTH", "").strip().lower() == "entra"
        if not entra and not has_key:
            missing.append("AZURE_OPENAI_API_KEY (or AZURE_OPENAI_AUTH=entra)")
    elif api != "chat" and not has_key:
        missing.append("OPENAI_API_KEY")
    if api == "threads" and not given("OPENAI_ASSISTANT_ID"):
        missing.append("OPENAI_ASSISTANT_ID")
    return missing


def scheme_problem(name: str, url: str) -> str | None:
    """`api.openai.com/v1` is read by the SDK as a relative path: say the scheme is missing."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return None
    bare = url.split("://", 1)[-1]
    return f"{name} {url} has no http:// or https:// scheme: did you mean https://{bare}?"


def azure_api_version(assistant_api: str, configured: str | None) -> str:
    """OPENAI_API_VERSION, else a version that has the backend's API."""
    if configured:
        return configured
    return AZURE_GA_API_VERSION if assistant_api == "chat" else AZURE_PREVIEW_API_VERSION


def azure_problem(
    *,
    endpoint: str | None,
    base_url: str | None,
    assistant_api: str,
    api_version: str | None,
    auth: str | None,
) -> str | None:
    """What makes an Azure OpenAI configuration unusable, in one line; None when it is fine."""
    if auth is not None and auth not in AZURE_AUTH_VALUES:
        return f"AZURE_OPENAI_AUTH must be 'key' or 'entra', not {auth!r}"
    if endpoint is None:
        if auth is not None:
            return "AZURE_OPENAI_AUTH is set but AZURE_OPENAI_ENDPOINT is not"
        return None
    if base_url is not None:
        return (
            "AZURE_OPENAI_ENDPOINT and OPENAI_BASE_URL are both set: unset OPENAI_BASE_URL "
            "to use Azure OpenAI, or AZURE_OPENAI_ENDPOINT to use OPENAI_BASE_URL"
        )
    if (problem := scheme_problem("AZURE_OPENAI_ENDPOINT", endpoint)) is not None:
        return problem
    version = azure_api_version(assistant_api, api_version)
    if not azure_version_has(assistant_api, version):
        first, preview = _FIRST_WITH[assistant_api]
        kind = "preview " if preview else ""
        return (
            f"ASSISTANT_API={assistant_api} on Azure needs a {kind}API version from {first} "
            f"on (OPENAI_API_VERSION is {version}): set OPENAI_API_VERSION="
            f"{AZURE_PREVIEW_API_VERSION}, or ASSISTANT_API=chat"
        )
    return None


def azure_version_has(assistant_api: str, version: str) -> bool:
    """Whether Azure's API `version` has the backend's API (unknown formats are let through:
    the start-up check then asks Azure itself)."""
    if assistant_api not in _FIRST_WITH:
        return True
    match = _AZURE_VERSION.fullmatch(version.strip())
    if match is None:
        return True
    first, preview_only = _FIRST_WITH[assistant_api]
    if preview_only and not match.group(2):
        return False
    return match.group(1) >= first


def v1_suggestion(base_url: str) -> str | None:
    """For a base URL whose path names no API version (`http://host:8000`): the same with
    `/v1`, which OpenAI-compatible servers expect; None when a version is already there."""
    path = urlsplit(base_url).path
    if any(re.fullmatch(r"v\d+\w*", part) for part in path.split("/")):
        return None
    return base_url.rstrip("/") + "/v1"
