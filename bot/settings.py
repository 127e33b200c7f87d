"""One Settings object, read once from the environment (and a `.env` file).

Every other module receives the settings it needs as arguments; nothing reads the
environment on import. A bad or missing value raises `SettingsError` whose message is the
single line the operator needs to fix it. Each area's settings are read and checked in
bot/settings_parse.py, single values in bot/settings_values.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from bot import setup_rules
from bot.settings_parse import (
    DEFAULT_SCOPES,
    AssistantApi,
    DeliveryMode,
    LogFormat,
    admin_settings,
    api_key,
    assistant_api,
    azure_settings,
    delivery,
    encryption_keys,
    instance_id,
    instructions,
    log_level,
    oauth_settings,
    slack_credentials,
    tool_settings,
    with_scheme,
)
from bot.settings_values import (
    SettingsError,
    csv_items,
    env_bool,
    env_float,
    env_int,
    env_optional_int,
    env_port,
    health_port,
)
from bot.tools.config import McpServer

__all__ = ["Settings", "SettingsError", "database_url", "load_settings"]

DEFAULT_MODEL = "gpt-5-mini"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///bot.db"
DEFAULT_GREETING = "Hi! How can I help? Ask me anything, or pick a suggestion below."
DEFAULT_PROMPTS = (
    "Summarise this channel's recent discussion",
    "Help me write a clear message",
    "Explain a concept simply",
)


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
    # Running the bot for an organisation: admins, budgets, prices, metrics, logs.
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
    azure_auth: Literal["key", "entra"] = "key"
    """Azure OpenAI sign-in: an API key, or Entra ID (azure-identity)."""
    # OpenAI webhooks that wake turns waiting on background responses (bot/webhooks.py).
    openai_webhook_secret: str | None = None
    webhook_poll_s: float = 5.0
    """With webhooks, runs are still polled this often: a safety net for a lost webhook."""
    # Installs in many workspaces by OAuth (empty in single-token mode).
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    slack_state_secret: str | None = None
    slack_scopes: tuple[str, ...] = DEFAULT_SCOPES
    slack_redirect_uri: str | None = None
    token_refresh_minutes: int = 120
    delete_data_on_uninstall: bool = False
    agent_view: bool = True
    """The app uses Slack's Agent messaging experience (`agent_view` in the manifest)."""
    mcp_servers: tuple[McpServer, ...] = ()
    tool_timeout_s: float = 30.0
    tool_calls_per_turn: int = 8
    slack_search: bool = False
    token_encryption_keys: tuple[str, ...] = ()
    """Fernet keys for the tokens stored at rest, the first encrypting (bot/crypto.py)."""
    approval_timeout_s: float = 900.0
    """A tool call nobody allowed or denied within this long is answered as denied."""

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

    if missing := setup_rules.missing_settings(env):  # every one of them, in one line
        raise SettingsError(
            f"missing settings: {', '.join(missing)} — copy .env.example to .env and fill them in"
        )
    oauth = oauth_settings(env, get)
    is_oauth = oauth["slack_client_id"] is not None
    bot_token, app_token, signing_secret = slack_credentials(get, oauth=is_oauth)
    assistant_id = get("OPENAI_ASSISTANT_ID")
    api = assistant_api(get("ASSISTANT_API"), assistant_id)
    key = api_key(get, api)
    if api == "threads" and assistant_id is None:
        raise SettingsError(
            "OPENAI_ASSISTANT_ID is not set: ASSISTANT_API=threads needs an assistant id (asst_…)"
        )
    port = env_port(env, "PORT", 3000)
    return Settings(
        instance_id=instance_id(get("BOT_INSTANCE_ID") or get("DYNO"), app_token, port),
        retry_base_s=env_float(env, "RETRY_BASE_S", 0.5, minimum=0),
        slack_bot_token=bot_token,
        slack_signing_secret=signing_secret,
        slack_app_token=app_token,
        slack_api_url=_with_trailing_slash(get("SLACK_API_URL") or DEFAULT_SLACK_API_URL),
        openai_api_key=key,
        openai_base_url=with_scheme("OPENAI_BASE_URL", get("OPENAI_BASE_URL")),
        openai_assistant_id=assistant_id,
        openai_model=get("OPENAI_MODEL") or DEFAULT_MODEL,
        assistant_api=api,
        assistant_instructions=instructions(
            get("ASSISTANT_INSTRUCTIONS"), get("ASSISTANT_INSTRUCTIONS_FILE")
        ),
        openai_web_search=env_bool(env, "OPENAI_WEB_SEARCH", False),
        openai_vector_store_ids=csv_items(get("OPENAI_VECTOR_STORE_IDS")),
        database_url=database_url(get("DATABASE_URL")),
        port=port,
        delivery=delivery(get("DELIVERY")),
        poll_initial_s=env_float(env, "POLL_INITIAL_MS", 100, minimum=10) / 1000,
        poll_max_s=env_float(env, "POLL_MAX_MS", 500, minimum=10) / 1000,
        answer_deadline_s=env_float(env, "ANSWER_DEADLINE_S", 120, minimum=1),
        openai_max_retries=env_int(env, "OPENAI_MAX_RETRIES", 2, minimum=0, maximum=10),
        openai_timeout_s=env_float(env, "OPENAI_TIMEOUT_S", 30, minimum=1),
        lease_s=env_float(env, "LEASE_S", 30, minimum=1),
        max_concurrent_turns=env_int(env, "MAX_CONCURRENT_TURNS", 1000, minimum=1, maximum=100_000),
        shutdown_grace_s=env_float(env, "SHUTDOWN_GRACE_S", 8, minimum=0),
        allowed_team_ids=frozenset(csv_items(get("ALLOWED_TEAM_IDS"))),
        allowed_channel_ids=frozenset(csv_items(get("ALLOWED_CHANNEL_IDS"))),
        user_rate_limit_per_minute=env_int(
            env, "USER_RATE_LIMIT_PER_MINUTE", 0, minimum=0, maximum=10_000
        ),
        log_level=log_level(get("LOG_LEVEL")),
        assistant_greeting=get("ASSISTANT_GREETING") or DEFAULT_GREETING,
        suggested_prompts=_prompts(env.get("ASSISTANT_SUGGESTED_PROMPTS")),
        db_pool_size=env_int(env, "DB_POOL_SIZE", 20, minimum=1, maximum=1000),
        health_port=health_port(env),
        **admin_settings(env, get),
        context_tokens=env_optional_int(env, "CONTEXT_TOKENS", minimum=500, maximum=10_000_000),
        **azure_settings(get, api),
        openai_webhook_secret=get("OPENAI_WEBHOOK_SECRET"),
        webhook_poll_s=env_float(env, "OPENAI_WEBHOOK_POLL_S", 5, minimum=0.1),
        **oauth,
        **tool_settings(env, get),
        token_encryption_keys=encryption_keys(get("TOKEN_ENCRYPTION_KEYS"), oauth=is_oauth),
    )


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


def _prompts(raw: str | None) -> tuple[str, ...]:
    """`ASSISTANT_SUGGESTED_PROMPTS`: prompts separated by `|`; set but empty turns them off."""
    if raw is None:
        return DEFAULT_PROMPTS
    return tuple(part.strip() for part in raw.split("|") if part.strip())[:4]


def _with_trailing_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"
