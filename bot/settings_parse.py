"""The settings of each area, read and checked as a whole: Slack's tokens, OAuth installs,
the OpenAI backend (and Azure), admins and budgets, tools, and where this process runs.

Each parser returns the `Settings` fields of its area, or raises `SettingsError` with the
one line the operator needs. `bot/settings.py` puts them together.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from bot import setup_rules
from bot.admin.commands import MAX_MODEL_CHARS
from bot.crypto import KEYGEN_HINT, parse_keys
from bot.settings_values import (
    SettingsError,
    csv_items,
    env_bool,
    env_float,
    env_int,
    env_port,
    one_of,
)
from bot.tools.config import McpServer, ToolsConfigError, parse_servers

AssistantApi = Literal["threads", "responses", "chat"]
DeliveryMode = Literal["poll", "stream"]
LogFormat = Literal["text", "json"]
Get = Callable[[str], str | None]
"""A variable's value with surrounding blanks removed; None when unset or blank."""

DEFAULT_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "chat:write",
    "users:read",
    "files:read",
    "files:write",
    "commands",
)
"""The bot scopes an OAuth install asks for: the manifest's (manifest.yml, manifest.oauth.yml)."""
NO_KEY = "no-key"
"""The key sent to a Chat Completions server that needs none (the SDK insists on one)."""
OAUTH_NAMES = ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_STATE_SECRET")


# Slack ----------------------------------------------------------------------------------------


def slack_credentials(get: Get, *, oauth: bool) -> tuple[str, str | None, str]:
    """The bot token (none in OAuth mode: each workspace's is stored), the app-level token
    (Socket Mode) and the signing secret (HTTP mode), checked against each other."""
    if oauth:
        bot_token = ""
        if get("SLACK_BOT_TOKEN") is not None:
            raise SettingsError(
                "SLACK_BOT_TOKEN and SLACK_CLIENT_ID are both set: unset SLACK_BOT_TOKEN to "
                "install by OAuth in many workspaces, or unset SLACK_CLIENT_ID, "
                "SLACK_CLIENT_SECRET and SLACK_STATE_SECRET to serve SLACK_BOT_TOKEN's one"
            )
        if get("SLACK_APP_TOKEN") is not None:
            raise SettingsError(
                "OAuth installs need HTTP mode (the install pages are web pages): unset "
                "SLACK_APP_TOKEN when SLACK_CLIENT_ID is set"
            )
    else:
        bot_token = get("SLACK_BOT_TOKEN") or ""
        if not bot_token:
            raise SettingsError(
                "SLACK_BOT_TOKEN is not set: set it to the app's Bot User OAuth Token (xoxb-…)"
            )
        if not bot_token.startswith("xoxb-"):
            raise SettingsError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
    app_token = get("SLACK_APP_TOKEN")
    if app_token is not None and not app_token.startswith("xapp-"):
        raise SettingsError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
    signing_secret = get("SLACK_SIGNING_SECRET")
    if signing_secret is None and app_token is None:
        raise SettingsError(
            "SLACK_SIGNING_SECRET is not set: copy it from the Slack app's Basic Information page"
            " (or set SLACK_APP_TOKEN to use Socket Mode)"
        )
    return bot_token, app_token, signing_secret or ""


def oauth_settings(env: Mapping[str, str], get: Get) -> dict[str, Any]:
    """OAuth mode is on when SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and SLACK_STATE_SECRET are
    all set; some without the others is a mistake worth a line."""
    values = {name: get(name) for name in OAUTH_NAMES}
    given = [name for name in OAUTH_NAMES if values[name] is not None]
    if given and len(given) < len(OAUTH_NAMES):
        missing = ", ".join(name for name in OAUTH_NAMES if values[name] is None)
        raise SettingsError(
            f"{missing} not set: installing by OAuth needs SLACK_CLIENT_ID, "
            "SLACK_CLIENT_SECRET (Basic Information → App Credentials) and SLACK_STATE_SECRET "
            "(any long random string)"
        )
    state_secret = values["SLACK_STATE_SECRET"]
    if state_secret is not None and len(state_secret) < 16:
        raise SettingsError("SLACK_STATE_SECRET must be at least 16 characters of random text")
    return {
        "slack_client_id": values["SLACK_CLIENT_ID"],
        "slack_client_secret": values["SLACK_CLIENT_SECRET"],
        "slack_state_secret": state_secret,
        "slack_scopes": csv_items(get("SLACK_SCOPES")) or DEFAULT_SCOPES,
        "slack_redirect_uri": get("SLACK_REDIRECT_URI"),
        "token_refresh_minutes": env_int(
            env, "SLACK_TOKEN_REFRESH_MINUTES", 120, minimum=1, maximum=11 * 60
        ),
        "delete_data_on_uninstall": env_bool(env, "DELETE_DATA_ON_UNINSTALL", False),
        "agent_view": env_bool(env, "SLACK_AGENT_VIEW", True),
    }


def encryption_keys(raw: str | None, *, oauth: bool) -> tuple[str, ...]:
    """OAuth mode stores every workspace's tokens, so it needs a key of its own; single-token
    mode stores only short-lived action tokens and may derive its key (bot/crypto.py)."""
    try:
        keys = parse_keys(raw or "")
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    if oauth and not keys:
        raise SettingsError(
            "TOKEN_ENCRYPTION_KEYS is not set: OAuth mode stores each workspace's tokens "
            f"encrypted with it; {KEYGEN_HINT}"
        )
    return keys


# OpenAI ---------------------------------------------------------------------------------------


def assistant_api(raw: str | None, assistant_id: str | None) -> AssistantApi:
    if raw is None:
        return "threads" if assistant_id else "responses"
    return one_of("ASSISTANT_API", raw, get_args(AssistantApi))


def api_key(get: Get, api: AssistantApi) -> str:
    """OPENAI_API_KEY (or AZURE_OPENAI_API_KEY on Azure); only the chat backend can do
    without one, for a local server (Ollama, vLLM) that checks no key."""
    openai_key, azure_key = get("OPENAI_API_KEY"), get("AZURE_OPENAI_API_KEY")
    key = openai_key or azure_key
    if key is not None:
        return key
    if api == "chat" or get("AZURE_OPENAI_ENDPOINT") is not None:
        return NO_KEY  # on Azure: AZURE_OPENAI_AUTH=entra (settings checked the key otherwise)
    raise SettingsError("OPENAI_API_KEY is not set: set it to an OpenAI API key (sk-…)")


def azure_settings(get: Get, api: AssistantApi) -> dict[str, Any]:
    """Azure OpenAI's endpoint, API version and sign-in (an API key, or Entra ID through
    azure-identity), checked as a whole."""
    auth = (get("AZURE_OPENAI_AUTH") or "").lower() or None
    endpoint = get("AZURE_OPENAI_ENDPOINT")
    problem = setup_rules.azure_problem(
        endpoint=endpoint,
        base_url=get("OPENAI_BASE_URL"),
        assistant_api=api,
        api_version=get("OPENAI_API_VERSION"),
        auth=auth,
    )
    if problem is not None:
        raise SettingsError(problem)
    return {
        "azure_openai_endpoint": endpoint,
        "openai_api_version": get("OPENAI_API_VERSION"),
        "azure_auth": "entra" if auth == "entra" else "key",
    }


def instructions(text: str | None, path: str | None) -> str | None:
    if path is None:
        return text
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise SettingsError(
            f"ASSISTANT_INSTRUCTIONS_FILE {path!r} cannot be read: {exc.strerror}"
        ) from None


def with_scheme(name: str, url: str | None) -> str | None:
    if url is not None and (problem := setup_rules.scheme_problem(name, url)) is not None:
        raise SettingsError(problem)
    return url


def delivery(raw: str | None) -> DeliveryMode:
    return "stream" if raw is None else one_of("DELIVERY", raw, get_args(DeliveryMode))


# Admins, tools, this process -------------------------------------------------------------------


def admin_settings(env: Mapping[str, str], get: Get) -> dict[str, Any]:
    """Admins, budgets (0 = off), a price file, metrics and the log format."""
    prices_file = get("PRICES_FILE")
    if prices_file is not None and not Path(prices_file).is_file():
        raise SettingsError(f"PRICES_FILE {prices_file!r} is not a readable file")
    log_format = (get("LOG_FORMAT") or "text").lower()
    return {
        "admin_user_ids": frozenset(csv_items(get("ADMIN_USER_IDS"))),
        "user_daily_token_limit": env_int(
            env, "USER_DAILY_TOKEN_LIMIT", 0, minimum=0, maximum=10**12
        ),
        "channel_monthly_cost_limit_usd": env_float(
            env, "CHANNEL_MONTHLY_COST_LIMIT_USD", 0, minimum=0
        ),
        "allowed_models": allowed_models(get("ALLOWED_MODELS")),
        "prices_file": prices_file,
        "metrics_port": None if get("METRICS_PORT") is None else env_port(env, "METRICS_PORT"),
        "log_format": one_of("LOG_FORMAT", log_format, get_args(LogFormat)),
    }


def allowed_models(raw: str | None) -> tuple[str, ...]:
    models = csv_items(raw)
    too_long = [model for model in models if len(model) > MAX_MODEL_CHARS]
    if too_long:
        raise SettingsError(
            f"ALLOWED_MODELS: {too_long[0][:40]!r}… is over {MAX_MODEL_CHARS} chars"
        )
    return models


def tool_settings(env: Mapping[str, str], get: Get) -> dict[str, Any]:
    """MCP servers from MCP_SERVERS_FILE, the limits on tool calls, Slack search."""
    path = get("MCP_SERVERS_FILE")
    servers: tuple[McpServer, ...] = ()
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"MCP_SERVERS_FILE {path!r} cannot be read: {exc}") from exc
        try:
            servers = parse_servers(text, toml=path.endswith(".toml"), env=env)
        except ToolsConfigError as exc:
            raise SettingsError(f"MCP_SERVERS_FILE {path!r} {exc}") from exc
    return {
        "mcp_servers": servers,
        "tool_timeout_s": env_float(env, "TOOL_TIMEOUT_S", 30, minimum=1),
        "tool_calls_per_turn": env_int(env, "TOOL_CALLS_PER_TURN", 8, minimum=1, maximum=100),
        "slack_search": env_bool(env, "SLACK_SEARCH", False),
        "approval_timeout_s": env_float(env, "APPROVAL_TIMEOUT_S", 900, minimum=1),
    }


def log_level(raw: str | None) -> str:
    level = (raw or "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {raw!r}")
    return level


def instance_id(configured: str | None, app_token: str | None, port: int) -> str:
    """A name for this process that survives its restarts, so a restarted process resumes
    its predecessor's conversations at once: `BOT_INSTANCE_ID`, else the platform's (Heroku's
    `DYNO`), else host and port in HTTP mode (two processes cannot share a port). Socket Mode
    without either gets a fresh name: its predecessor's leases then expire after LEASE_S."""
    if configured:
        return configured[:64]
    if app_token is None:
        return f"{socket.gethostname()}:{port}"[:64]
    return f"bot-{uuid.uuid4().hex[:12]}"
