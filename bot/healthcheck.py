"""`python -m bot.healthcheck`: exit 0 when this machine's bot answers `GET /healthz`.

For a container's HEALTHCHECK (the slim image has no curl). It asks the port the bot serves
`/healthz` on, read from the same settings: `PORT` in HTTP mode; in Socket Mode `HEALTH_PORT`,
else `PORT`. It reads only those settings, so it works whatever else is set or missing.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

from bot.settings_values import SettingsError, env_port, health_port

TIMEOUT_S = 5.0


def healthz_port(env: Mapping[str, str]) -> int | None:
    """Where `GET /healthz` is served, or None when the bot listens on no port at all."""
    if env.get("SLACK_APP_TOKEN", "").strip():
        return health_port(env)
    return env_port(env, "PORT", 3000)


def check(env: Mapping[str, str]) -> str | None:
    """None when /healthz answers 200; otherwise one line saying why not."""
    try:
        port = healthz_port(env)
    except SettingsError as exc:
        return str(exc)
    if port is None:
        return "no health port in Socket Mode: set HEALTH_PORT (or PORT)"
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"
    return None if status == 200 else f"{url}: HTTP {status}"


def main() -> int:
    from dotenv import dotenv_values

    env = {**{k: v for k, v in dotenv_values(".env").items() if v is not None}, **os.environ}
    problem = check(env)
    if problem is None:
        return 0
    print(f"unhealthy: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
