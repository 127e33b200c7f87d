"""Reading one setting's value: a number in range, a yes/no, a comma-separated list.

Each helper names the variable in its error, so the operator reads one line that says what
to fix. An unset or blank variable takes the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

Choice = TypeVar("Choice", bound=str)


class SettingsError(ValueError):
    """A setting is missing or wrong; the message says what to set."""


def one_of(name: str, raw: str, choices: tuple[Choice, ...]) -> Choice:
    """`raw` if it is one of `choices`; else the one line listing them."""
    for choice in choices:
        if raw == choice:
            return choice
    *first, last = (repr(choice) for choice in choices)
    raise SettingsError(f"{name} must be {', '.join(first)} or {last}, not {raw!r}")


def csv_items(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
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


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
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


def env_optional_int(
    env: Mapping[str, str], name: str, *, minimum: int, maximum: int
) -> int | None:
    if not env.get(name, "").strip():
        return None
    return env_int(env, name, minimum, minimum=minimum, maximum=maximum)


def env_port(env: Mapping[str, str], name: str, default: int = 0) -> int:
    return env_int(env, name, default, minimum=1, maximum=65535)


def health_port(env: Mapping[str, str]) -> int | None:
    """Socket Mode listens on no port; a health check needs one: HEALTH_PORT, else PORT."""
    for name in ("HEALTH_PORT", "PORT"):
        if env.get(name, "").strip():
            return env_port(env, name)
    return None
