"""Secrets out of log lines, whatever logs them (the bot, slack_sdk's request and response
logging at DEBUG, aiohttp, the OpenAI SDK): pure text in, text out, table-tested.

Two nets: patterns for every kind of secret the bot handles (Slack tokens, OpenAI keys,
OAuth codes and client secrets, refresh and action tokens, Fernet keys, Authorization
headers), and the exact secret values the bot was configured with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings

MASK = "[redacted]"
MIN_LITERAL = 8
"""Configured values shorter than this are not looked for (they would hide ordinary words)."""

_SECRET_KEYS = (
    "code",
    "client_secret",
    "refresh_token",
    "access_token",
    "action_token",
    "bot_token",
    "bot_refresh_token",
    "user_token",
    "user_refresh_token",
    "app_token",
    "token",
    "api_key",
    "api-key",
    "x-api-key",
    "secret",
    "password",
    "signing_secret",
    "state",
)
_KEYS = "|".join(re.escape(key) for key in _SECRET_KEYS)
_FORM_VALUE = re.compile(  # code=abc&state=… in a URL or a form body
    r"(?<![\w-])(" + _KEYS + r")=(?!\[redacted\])([^&\s\"',;}\]\\]+)", re.IGNORECASE
)
# 'code': 'abc' (a dict), 'code': ['abc'] (a query), "refresh_token":"xoxe-1-…" (JSON)
_QUOTED_VALUE = re.compile(
    r"(\\?[\"'])(" + _KEYS + r")\1(\s*:\s*)(\[?\s*\\?[\"']?)(?!\[redacted\])"
    r"([^\"'\s,;}\[\]\\]+)",
    re.IGNORECASE,
)
_AUTHORIZATION = re.compile(
    r"(authorization(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?)((?:bearer|basic|token)\s+)?"
    r"(?!\[redacted\])([^\"',;}\s\\]+)",
    re.IGNORECASE,
)
_PATTERNS = (
    re.compile(r"\bxox[a-z](?:\.xox[a-z])?-[A-Za-z0-9-]+"),  # Slack tokens, rotating too
    re.compile(r"\bxapp-[A-Za-z0-9-]+"),  # app-level tokens
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),  # OpenAI keys (sk-…, sk-proj-…)
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}"),  # OpenAI webhook secrets
    re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}=(?![A-Za-z0-9_=-])"),  # Fernet keys
)


def redact(text: str, literals: Iterable[str] = ()) -> str:
    """`text` with every secret it holds replaced by `[redacted]`."""
    for literal in literals:
        if len(literal) >= MIN_LITERAL:
            text = text.replace(literal, MASK)
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{MASK}", text)
    text = _FORM_VALUE.sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _QUOTED_VALUE.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{m.group(4)}{MASK}", text
    )
    for pattern in _PATTERNS:
        text = pattern.sub(MASK, text)
    return text


def configured_secrets(settings: Settings) -> list[str]:
    """The secret values in the settings: looked for literally in every log line."""
    found = [
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.openai_api_key,
        settings.slack_client_secret,
        settings.slack_state_secret,
        settings.openai_webhook_secret,
        *settings.token_encryption_keys,
    ]
    found += [value for server in settings.mcp_servers for value in server.headers.values()]
    return [value for value in found if value]
