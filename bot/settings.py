"""One Settings object, read once from the environment (and a `.env` file).

Every other module receives the settings it needs as arguments; nothing reads the
environment on import. A bad or missing value raises `SettingsError` whose message is the
single line the operator needs to fix it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bot.admin.commands import MAX_MODEL_CHARS
from bot.tools.config import McpServer, ToolsConfigError, parse_servers

AssistantApi = Literal["threads", "responses", "chat"]
DeliveryMode = Literal["poll", "stream"]
LogFormat = Literal["text", "json"]

DEFAULT_MODEL = "gpt-5-mini"
DEFAULT_AZURE_API_VERSION = "2024-10-21"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///bot.db"
DEFAULT_GREETING = "Hi! How can I help? Ask me anything, or pick a suggestion below."
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
DEFAULT_PROMPTS = (
    "Summarise this channel's recent discussion",
    "Help me write a clear message",
    "Explain a concept simply",
)


class SettingsError(ValueError):
    """A setting is missing or wrong; the message says what to set."""


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str
    slack_signing_secret: str
    openai_api_key: str
    assistant_api: AssistantApi
    slack_app_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    openai_base_url: str | None = None
    openai_assistant_id: str | None = None
    openai_model: str = DEFAULT_MODEL
    assistant_instructions: str | None = None
    openai_web_search: bool = False
    openai_vector_store_ids: tuple[str, ...] = ()
    database_url: str = DEFAULT_DATABASE_URL
    port: int = 3000
    delivery: DeliveryMode = "stream"
    poll_initial_s: float = 0.1
    poll_max_s: float = 0.5
    answer_deadline_s: float = 120.0
    openai_max_retries: int = 2
    openai_timeout_s: float = 30.0
    lease_s: float = 30.0
    max_concurrent_turns: int = 1000
    shutdown_grace_s: float = 8.0
    allowed_team_ids: frozenset[str] = field(default_factory=frozenset)
    allowed_channel_ids: frozenset[str] = field(default_factory=frozenset)
    user_rate_limit_per_minute: int = 0
    log_level: str = "INFO"
    assistant_greeting: str = DEFAULT_GREETING
    suggested_prompts: tuple[str, ...] = DEFAULT_PROMPTS
    instance_id: str = field(default_factory=lambda: f"bot-{uuid.uuid4().hex[:12]}")
    retry_base_s: float = 0.5
    db_pool_size: int = 20
    health_port: int | None = None
    """Socket Mode: where `GET /healthz` is served (HEALTH_PORT, else PORT when set)."""
    # Issue 10: admins, budgets, prices, metrics, logs.
    admin_user_ids: frozenset[str] = field(default_factory=frozenset)
    user_daily_token_limit: int = 0
    channel_monthly_cost_limit_usd: float = 0.0
    allowed_models: tuple[str, ...] = ()
    """ALLOWED_MODELS for `/assistant model`; empty: the priced models and OPENAI_MODEL."""
    prices_file: str | None = None
    metrics_port: int | None = None
    log_format: LogFormat = "text"
    context_tokens: int | None = None
    azure_openai_endpoint: str | None = None
    openai_api_version: str | None = None
    # Issue 12: OpenAI webhooks for background responses (bot/webhooks.py).
    openai_webhook_secret: str | None = None
    webhook_poll_s: float = 5.0
    """With webhooks, runs are still polled this often: a safety net for a lost webhook."""
    # Issue 14: installs in many workspaces by OAuth (empty in single-token mode).
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    slack_state_secret: str | None = None
    slack_scopes: tuple[str, ...] = DEFAULT_SCOPES
    slack_redirect_uri: str | None = None
    token_refresh_minutes: int = 120
    delete_data_on_uninstall: bool = False
    agent_view: bool = False
    """The app uses Slack's Agent messaging experience (`agent_view` in the manifest)."""
    mcp_servers: tuple[McpServer, ...] = ()
    tool_timeout_s: float = 30.0
    tool_calls_per_turn: int = 8
    slack_search: bool = False

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def openai_webhooks(self) -> bool:
        """Whether OpenAI's webhooks can reach the bot and wake its turns: a secret, HTTP
        mode (POST /openai/webhook on PORT) and the Responses API (background responses)."""
        return (
            bool(self.openai_webhook_secret)
            and not self.socket_mode
            and (self.assistant_api == "responses")
        )

    @property
    def oauth(self) -> bool:
        """Many workspaces, each installed through `/slack/install`, each with its own token."""
        return self.slack_client_id is not None


def load_settings(
    env: Mapping[str, str] | None = None, *, dotenv_path: str | None = ".env"
) -> Settings:
    """Build Settings from `env` (default: the process environment plus `.env`)."""
    if env is None:
        if dotenv_path:
            from dotenv import load_dotenv

            load_dotenv(dotenv_path, override=False)
        env = os.environ
    return _parse(env)


def _parse(env: Mapping[str, str]) -> Settings:
    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    def required(name: str, hint: str) -> str:
        value = get(name)
        if value is None:
            raise SettingsError(f"{name} is not set: {hint}")
        return value

    oauth = _oauth_settings(env, get)
    if oauth["slack_client_id"] is None:
        bot_token = required("SLACK_BOT_TOKEN", "set it to the app's Bot User OAuth Token (xoxb-…)")
        if not bot_token.startswith("xoxb-"):
            raise SettingsError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
    else:
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
    app_token = get("SLACK_APP_TOKEN")
    if app_token is not None and not app_token.startswith("xapp-"):
        raise SettingsError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
    signing_secret = get("SLACK_SIGNING_SECRET")
    if signing_secret is None and app_token is None:
        raise SettingsError(
            "SLACK_SIGNING_SECRET is not set: copy it from the Slack app's Basic Information page"
            " (or set SLACK_APP_TOKEN to use Socket Mode)"
        )
    assistant_id = get("OPENAI_ASSISTANT_ID")
    assistant_api = _assistant_api(get("ASSISTANT_API"), assistant_id)
    api_key = _api_key(get, assistant_api)
    if assistant_api == "threads" and assistant_id is None:
        raise SettingsError(
            "OPENAI_ASSISTANT_ID is not set: ASSISTANT_API=threads needs an assistant id (asst_…)"
        )
    port = _int(env, "PORT", 3000, minimum=1, maximum=65535)
    return Settings(
        instance_id=_instance_id(get("BOT_INSTANCE_ID") or get("DYNO"), app_token, port),
        retry_base_s=_float(env, "RETRY_BASE_S", 0.5, minimum=0),
        slack_bot_token=bot_token,
        slack_signing_secret=signing_secret or "",
        slack_app_token=app_token,
        slack_api_url=_with_trailing_slash(get("SLACK_API_URL") or DEFAULT_SLACK_API_URL),
        openai_api_key=api_key,
        openai_base_url=get("OPENAI_BASE_URL"),
        openai_assistant_id=assistant_id,
        openai_model=get("OPENAI_MODEL") or DEFAULT_MODEL,
        assistant_api=assistant_api,
        assistant_instructions=_instructions(
            get("ASSISTANT_INSTRUCTIONS"), get("ASSISTANT_INSTRUCTIONS_FILE")
        ),
        openai_web_search=_bool(env, "OPENAI_WEB_SEARCH", False),
        openai_vector_store_ids=_csv(get("OPENAI_VECTOR_STORE_IDS")),
        database_url=database_url(get("DATABASE_URL")),
        port=port,
        delivery=_delivery(get("DELIVERY")),
        poll_initial_s=_float(env, "POLL_INITIAL_MS", 100, minimum=10) / 1000,
        poll_max_s=_float(env, "POLL_MAX_MS", 500, minimum=10) / 1000,
        answer_deadline_s=_float(env, "ANSWER_DEADLINE_S", 120, minimum=1),
        openai_max_retries=_int(env, "OPENAI_MAX_RETRIES", 2, minimum=0, maximum=10),
        openai_timeout_s=_float(env, "OPENAI_TIMEOUT_S", 30, minimum=1),
        lease_s=_float(env, "LEASE_S", 30, minimum=1),
        max_concurrent_turns=_int(env, "MAX_CONCURRENT_TURNS", 1000, minimum=1, maximum=100_000),
        shutdown_grace_s=_float(env, "SHUTDOWN_GRACE_S", 8, minimum=0),
        allowed_team_ids=frozenset(_csv(get("ALLOWED_TEAM_IDS"))),
        allowed_channel_ids=frozenset(_csv(get("ALLOWED_CHANNEL_IDS"))),
        user_rate_limit_per_minute=_int(
            env, "USER_RATE_LIMIT_PER_MINUTE", 0, minimum=0, maximum=10_000
        ),
        log_level=_log_level(get("LOG_LEVEL")),
        assistant_greeting=get("ASSISTANT_GREETING") or DEFAULT_GREETING,
        suggested_prompts=_prompts(env.get("ASSISTANT_SUGGESTED_PROMPTS")),
        db_pool_size=_int(env, "DB_POOL_SIZE", 20, minimum=1, maximum=1000),
        health_port=_health_port(env),
        **_admin_settings(env, get),
        context_tokens=_optional_int(env, "CONTEXT_TOKENS", minimum=500, maximum=10_000_000),
        azure_openai_endpoint=get("AZURE_OPENAI_ENDPOINT"),
        openai_api_version=get("OPENAI_API_VERSION"),
        openai_webhook_secret=get("OPENAI_WEBHOOK_SECRET"),
        webhook_poll_s=_float(env, "OPENAI_WEBHOOK_POLL_S", 5, minimum=0.1),
        **oauth,
        **_tool_settings(env, get),
    )


def _oauth_settings(env: Mapping[str, str], get: Callable[[str], str | None]) -> dict[str, Any]:
    """Issue 14: OAuth mode is on when SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and
    SLACK_STATE_SECRET are all set; some without the others is a mistake worth a line."""
    names = ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_STATE_SECRET")
    values = {name: get(name) for name in names}
    given = [name for name in names if values[name] is not None]
    if given and len(given) < len(names):
        missing = ", ".join(name for name in names if values[name] is None)
        raise SettingsError(
            f"{missing} not set: installing by OAuth needs SLACK_CLIENT_ID, "
            "SLACK_CLIENT_SECRET (Basic Information → App Credentials) and SLACK_STATE_SECRET "
            "(any long random string)"
        )
    state_secret = values["SLACK_STATE_SECRET"]
    if state_secret is not None and len(state_secret) < 16:
        raise SettingsError("SLACK_STATE_SECRET must be at least 16 characters of random text")
    scopes = _csv(get("SLACK_SCOPES")) or DEFAULT_SCOPES
    return {
        "slack_client_id": values["SLACK_CLIENT_ID"],
        "slack_client_secret": values["SLACK_CLIENT_SECRET"],
        "slack_state_secret": state_secret,
        "slack_scopes": scopes,
        "slack_redirect_uri": get("SLACK_REDIRECT_URI"),
        "token_refresh_minutes": _int(
            env, "SLACK_TOKEN_REFRESH_MINUTES", 120, minimum=1, maximum=11 * 60
        ),
        "delete_data_on_uninstall": _bool(env, "DELETE_DATA_ON_UNINSTALL", False),
        "agent_view": _bool(env, "SLACK_AGENT_VIEW", False),
    }


def _tool_settings(env: Mapping[str, str], get: Callable[[str], str | None]) -> dict[str, Any]:
    """Issue 13's settings: MCP servers from MCP_SERVERS_FILE, limits, Slack search."""
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
        "tool_timeout_s": _float(env, "TOOL_TIMEOUT_S", 30, minimum=1),
        "tool_calls_per_turn": _int(env, "TOOL_CALLS_PER_TURN", 8, minimum=1, maximum=100),
        "slack_search": _bool(env, "SLACK_SEARCH", False),
    }


def _health_port(env: Mapping[str, str]) -> int | None:
    """Socket Mode listens on no port; a health check needs one: HEALTH_PORT, else PORT."""
    for name in ("HEALTH_PORT", "PORT"):
        if env.get(name, "").strip():
            return _int(env, name, 0, minimum=1, maximum=65535)
    return None


def _admin_settings(env: Mapping[str, str], get: Callable[[str], str | None]) -> dict[str, Any]:
    """Issue 10's settings: admins, budgets (0 = off), a price file, metrics, log format."""
    prices_file = get("PRICES_FILE")
    if prices_file is not None and not Path(prices_file).is_file():
        raise SettingsError(f"PRICES_FILE {prices_file!r} is not a readable file")
    log_format = (get("LOG_FORMAT") or "text").lower()
    if log_format not in ("text", "json"):
        raise SettingsError(f"LOG_FORMAT must be 'text' or 'json', not {log_format!r}")
    metrics_port = get("METRICS_PORT")
    return {
        "admin_user_ids": frozenset(_csv(get("ADMIN_USER_IDS"))),
        "user_daily_token_limit": _int(env, "USER_DAILY_TOKEN_LIMIT", 0, minimum=0, maximum=10**12),
        "channel_monthly_cost_limit_usd": _float(
            env, "CHANNEL_MONTHLY_COST_LIMIT_USD", 0, minimum=0
        ),
        "allowed_models": _allowed_models(get("ALLOWED_MODELS")),
        "prices_file": prices_file,
        "metrics_port": None
        if metrics_port is None
        else _int(env, "METRICS_PORT", 0, minimum=1, maximum=65535),
        "log_format": log_format,
    }


def _allowed_models(raw: str | None) -> tuple[str, ...]:
    models = _csv(raw)
    too_long = [model for model in models if len(model) > MAX_MODEL_CHARS]
    if too_long:
        raise SettingsError(
            f"ALLOWED_MODELS: {too_long[0][:40]!r}… is over {MAX_MODEL_CHARS} chars"
        )
    return models


def database_url(raw: str | None) -> str:
    """Normalise DATABASE_URL to an async SQLAlchemy URL.

    Heroku and most platforms hand out `postgres://` URLs, which SQLAlchemy does not accept.
    """
    if raw is None:
        return DEFAULT_DATABASE_URL
    scheme, sep, rest = raw.partition("://")
    if not sep:
        raise SettingsError(
            "DATABASE_URL must look like postgres://user@host/db or sqlite:///file.db"
        )
    drivers = {
        "postgres": "postgresql+asyncpg",
        "postgresql": "postgresql+asyncpg",
        "postgresql+asyncpg": "postgresql+asyncpg",
        "sqlite": "sqlite+aiosqlite",
        "sqlite+aiosqlite": "sqlite+aiosqlite",
    }
    if scheme not in drivers:
        raise SettingsError(
            f"DATABASE_URL scheme {scheme!r} is not supported: use postgres:// or sqlite://"
        )
    return f"{drivers[scheme]}://{rest}"


def _instance_id(configured: str | None, app_token: str | None, port: int) -> str:
    """A name for this process that survives its restarts, so a restarted process resumes
    its predecessor's conversations at once: `BOT_INSTANCE_ID`, else the platform's (Heroku's
    `DYNO`), else host and port in HTTP mode (two processes cannot share a port). Socket Mode
    without either gets a fresh name: its predecessor's leases then expire after LEASE_S."""
    if configured:
        return configured[:64]
    if app_token is None:
        return f"{socket.gethostname()}:{port}"[:64]
    return f"bot-{uuid.uuid4().hex[:12]}"


def _assistant_api(raw: str | None, assistant_id: str | None) -> AssistantApi:
    if raw is None:
        return "threads" if assistant_id else "responses"
    if raw == "threads":
        return "threads"
    if raw == "responses":
        return "responses"
    if raw == "chat":
        return "chat"
    raise SettingsError(f"ASSISTANT_API must be 'threads', 'responses' or 'chat', not {raw!r}")


def _delivery(raw: str | None) -> DeliveryMode:
    if raw is None:
        return "stream"
    if raw == "poll":
        return "poll"
    if raw == "stream":
        return "stream"
    raise SettingsError(f"DELIVERY must be 'poll' or 'stream', not {raw!r}")


def _instructions(text: str | None, path: str | None) -> str | None:
    if path is None:
        return text
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise SettingsError(
            f"ASSISTANT_INSTRUCTIONS_FILE {path!r} cannot be read: {exc.strerror}"
        ) from None


def _log_level(raw: str | None) -> str:
    level = (raw or "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {raw!r}")
    return level


def _prompts(raw: str | None) -> tuple[str, ...]:
    """`ASSISTANT_SUGGESTED_PROMPTS`: prompts separated by `|`; set but empty turns them off."""
    if raw is None:
        return DEFAULT_PROMPTS
    return tuple(part.strip() for part in raw.split("|") if part.strip())[:4]


def _with_trailing_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _csv(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum:g}, not {raw}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, not {raw}")
    return value


NO_KEY = "no-key"
"""The key sent to a Chat Completions server that needs none (the SDK insists on one)."""


def _api_key(get: Callable[[str], str | None], assistant_api: AssistantApi) -> str:
    """OPENAI_API_KEY (or AZURE_OPENAI_API_KEY on Azure); only the chat backend can do
    without one, for a local server (Ollama, vLLM) that checks no key."""
    openai_key, azure_key = get("OPENAI_API_KEY"), get("AZURE_OPENAI_API_KEY")
    key = openai_key or azure_key
    if key is not None:
        return key
    if assistant_api == "chat":
        return NO_KEY
    raise SettingsError("OPENAI_API_KEY is not set: set it to an OpenAI API key (sk-…)")


def _optional_int(env: Mapping[str, str], name: str, *, minimum: int, maximum: int) -> int | None:
    if not env.get(name, "").strip():
        return None
    return _int(env, name, minimum, minimum=minimum, maximum=maximum)
