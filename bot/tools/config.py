"""MCP servers as configured in `MCP_SERVERS_FILE` (JSON or TOML), parsed purely.

    {"servers": [{"label": "docs", "url": "https://mcp.example.com/mcp",
                  "token_env": "DOCS_MCP_TOKEN", "headers": {"X-Team": "eng"},
                  "headers_env": {"X-Api-Key": "DOCS_API_KEY"},
                  "allowed_tools": ["search"], "require_approval": ["delete_page"],
                  "teams": ["T0123ABCD"]}]}

Secrets never live in the file: `token_env` names the environment variable whose value is
sent as `Authorization: Bearer …`, and `headers_env` maps header names to variables.
`require_approval` is `"never"` (the default), `"always"`, or a list of tool names.
`teams` limits a server to the workspaces (T…) or Enterprise Grid organisations (E…) it
names, and is the only way a Slack Connect user of another organisation gets the server:
their own team must be listed too. Without it, every workspace the bot serves may use it.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RESERVED_LABEL = "slack"
LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
_KEYS = {
    "label",
    "url",
    "headers",
    "headers_env",
    "token_env",
    "allowed_tools",
    "require_approval",
    "teams",
}
TEAM_ID = re.compile(r"^[TE][A-Z0-9]{2,31}$")


class ToolsConfigError(ValueError):
    """The servers file is wrong; the message is one line saying what to fix."""


@dataclass(frozen=True)
class McpServer:
    label: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    allowed_tools: tuple[str, ...] | None = None
    """None: every tool the server lists."""
    approval: bool | tuple[str, ...] = False
    """True: every call asks first; a tuple: calls of those tools ask first."""
    teams: tuple[str, ...] | None = None
    """None: any workspace; else the workspaces and organisations (and Slack Connect users'
    teams) that may use the server."""

    def allows(self, tool: str) -> bool:
        return self.allowed_tools is None or tool in self.allowed_tools

    def needs_approval(self, tool: str) -> bool:
        return self.approval if isinstance(self.approval, bool) else tool in self.approval


def parse_servers(text: str, *, toml: bool, env: Mapping[str, str]) -> tuple[McpServer, ...]:
    """The servers in a file's text; `env` supplies the tokens and secret headers."""
    try:
        data: Any = tomllib.loads(text) if toml else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ToolsConfigError(f"is not valid {'TOML' if toml else 'JSON'}: {exc}") from exc
    raw = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise ToolsConfigError("needs a list of servers under the key 'servers'")
    servers = tuple(_server(index, entry, env) for index, entry in enumerate(raw))
    labels = [server.label for server in servers]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ToolsConfigError(f"names the label {duplicates[0]!r} twice")
    return servers


def _server(index: int, entry: object, env: Mapping[str, str]) -> McpServer:
    where = f"server {index + 1}"
    if not isinstance(entry, dict):
        raise ToolsConfigError(f"{where} is not a table/object")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ToolsConfigError(f"{where}: unknown key {unknown[0]!r}")
    label = entry.get("label")
    if label == RESERVED_LABEL:
        raise ToolsConfigError(f"{where}: the label 'slack' is taken by workspace search")
    if not isinstance(label, str) or not LABEL.match(label):
        raise ToolsConfigError(
            f"{where}: 'label' must be letters, digits, _ or - (at most 32, starting with a letter)"
        )
    where = f"server {label!r}"
    url = entry.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ToolsConfigError(f"{where}: 'url' must be an http(s) URL")
    headers = dict(_str_map(entry.get("headers"), f"{where}: 'headers'"))
    for name, variable in _str_map(entry.get("headers_env"), f"{where}: 'headers_env'").items():
        headers[name] = _secret(env, variable, where)
    token_env = entry.get("token_env")
    if token_env is not None:
        if not isinstance(token_env, str):
            raise ToolsConfigError(f"{where}: 'token_env' must name an environment variable")
        headers["Authorization"] = f"Bearer {_secret(env, token_env, where)}"
    if any(name.lower() == "authorization" for name in _str_map(entry.get("headers"), where)):
        raise ToolsConfigError(
            f"{where}: put the token in an environment variable and name it in 'token_env'"
        )
    allowed = entry.get("allowed_tools")
    if allowed is not None and not _str_list(allowed):
        raise ToolsConfigError(f"{where}: 'allowed_tools' must be a list of tool names")
    return McpServer(
        label=label,
        url=url,
        headers=headers,
        allowed_tools=tuple(allowed) if allowed is not None else None,
        approval=_approval(entry.get("require_approval", "never"), where),
        teams=_teams(entry.get("teams"), where),
    )


def _teams(value: object, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not _str_list(value) or not value:
        raise ToolsConfigError(f"{where}: 'teams' must be a non-empty list of team ids (T…, E…)")
    assert isinstance(value, list)
    wrong = [team for team in value if not TEAM_ID.match(team)]
    if wrong:
        raise ToolsConfigError(
            f"{where}: 'teams' has {wrong[0]!r}, not a team id (T…) or an organisation id (E…)"
        )
    return tuple(value)


def _approval(value: object, where: str) -> bool | tuple[str, ...]:
    if value in ("never", False):
        return False
    if value in ("always", True):
        return True
    if _str_list(value):
        assert isinstance(value, list)
        return tuple(value)
    raise ToolsConfigError(
        f"{where}: 'require_approval' must be 'never', 'always' or a list of tool names"
    )


def _secret(env: Mapping[str, str], variable: str, where: str) -> str:
    value = env.get(variable, "").strip()
    if not value:
        raise ToolsConfigError(f"{where}: the environment variable {variable} is not set")
    return value


def _str_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ToolsConfigError(f"{where} must map names to strings")
    return dict(value)


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
