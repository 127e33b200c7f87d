"""Start-up checks, one line per problem, all before the bot says `ready`.

`check_openai` makes one cheap authenticated call to OpenAI (or the OpenAI-compatible server
at OPENAI_BASE_URL, or Azure OpenAI) so that wrong settings stop the bot at start;
`check_ports` refuses a METRICS_PORT that the bot's own server already takes;
`check_slack_token`, `check_slack_url` and `open_socket_url` ask Slack once each.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

import aiohttp
import openai
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot import setup_rules
from bot.assistants.errors import connection_refused
from bot.assistants.factory import make_client, tls_context
from bot.settings import Settings
from bot.slack.client import SLACK_TIMEOUT_S

log = logging.getLogger("bot")

DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
OPENAI_CHECK_TIMEOUT_S = 10.0


class StartupError(Exception):
    """The bot cannot start; the message is one line saying what to fix."""


def check_ports(settings: Settings) -> None:
    """METRICS_PORT must be a port of its own: the bot's server already takes PORT (HTTP
    mode) or HEALTH_PORT / PORT (Socket Mode)."""
    metrics_port = settings.metrics_port
    if metrics_port is None:
        return
    served = settings.health_port if settings.socket_mode else settings.port
    if metrics_port == served:
        setting = "HEALTH_PORT or PORT" if settings.socket_mode else "PORT"
        raise StartupError(
            f"METRICS_PORT {metrics_port} is also {setting}: give metrics a port of their own "
            "(or unset METRICS_PORT for no metrics endpoint)"
        )


async def check_slack_token(client: AsyncWebClient, settings: Settings) -> AuthorizeResult:
    """Who the bot is (`auth.test`), which also proves the token works."""
    response = await _ask_slack(
        client.auth_test(),
        settings,
        token="SLACK_BOT_TOKEN",
        hint="set it to the Bot User OAuth Token of your installed app",
    )
    return AuthorizeResult.from_auth_test_response(
        bot_token=settings.slack_bot_token, auth_test_response=response
    )


async def check_slack_url(client: AsyncWebClient, settings: Settings) -> None:
    """OAuth mode has no token to test: `api.test` proves SLACK_API_URL is Slack's API."""
    await _ask_slack(
        client.api_test(),
        settings,
        token="SLACK_API_URL",
        hint="check the address of Slack's Web API",
    )


async def open_socket_url(client: AsyncWebClient, settings: Settings, app_token: str) -> str:
    """`apps.connections.open` with the app token: a Socket Mode address, or one line why not."""
    response = await _ask_slack(
        client.apps_connections_open(app_token=app_token),
        settings,
        token="SLACK_APP_TOKEN",
        hint="set it to an app-level token (xapp-…) with the connections:write scope, "
        "from the app's Basic Information page, and turn Socket Mode on",
    )
    url = response.get("url")
    if not isinstance(url, str) or not url:
        raise StartupError(
            f"SLACK_API_URL {settings.slack_api_url} gave no Socket Mode address "
            "(apps.connections.open answered without a url)"
        )
    return url


async def _ask_slack(
    call: Awaitable[AsyncSlackResponse], settings: Settings, *, token: str, hint: str
) -> AsyncSlackResponse:
    """Slack's answer, or one line saying which setting to fix."""
    try:
        return await call
    except (SlackApiError, ValueError, TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _slack_error(exc, settings, token=token, hint=hint) from None


def _slack_error(exc: Exception, settings: Settings, *, token: str, hint: str) -> StartupError:
    url = settings.slack_api_url
    if isinstance(exc, SlackApiError):
        data = exc.response.data if exc.response is not None else None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(data, dict) and data.get("ok") is False and isinstance(error, str) and error:
            return StartupError(f"Slack rejected {token} ({error}): {hint}")
        status = exc.response.status_code if exc.response is not None else "?"
        return StartupError(
            f"SLACK_API_URL {url} does not look like Slack's Web API (HTTP {status})"
        )
    if isinstance(exc, ValueError):
        return StartupError(
            f"SLACK_API_URL {url} does not look like Slack's Web API (the answer is not JSON)"
        )
    detail = "connection refused" if connection_refused(exc) else type(exc).__name__
    if isinstance(exc, TimeoutError):
        detail = f"no answer within {SLACK_TIMEOUT_S} s"
    return StartupError(f"cannot reach Slack at SLACK_API_URL {url} ({detail})")


async def check_openai(settings: Settings) -> None:
    """One cheap authenticated call, so wrong OpenAI settings stop the bot at start.

    Responses and chat: `models.retrieve(OPENAI_MODEL)`; threads: `beta.assistants.retrieve`.
    An OpenAI-compatible server may lack that endpoint: a 404 that is not an OpenAI-style
    "not found" error (or one saying "Invalid URL") gives a warning and the bot starts,
    unless OPENAI_BASE_URL names no API version (then `/v1` is what is missing).
    """
    if settings.azure_openai_endpoint:
        await check_azure(settings)
        return
    client = openai.AsyncOpenAI(
        # The SDK's own httpx transport, as by default, with the process's one CA store.
        http_client=openai.DefaultAsyncHttpxClient(verify=tls_context()),
        api_key=settings.openai_api_key or "no-key",
        base_url=settings.openai_base_url,
        max_retries=0,
        timeout=min(OPENAI_CHECK_TIMEOUT_S, settings.openai_timeout_s),
    )
    url = settings.openai_base_url or DEFAULT_OPENAI_URL
    threads = settings.assistant_api == "threads"
    setting, value = (
        ("OPENAI_ASSISTANT_ID", settings.openai_assistant_id)
        if threads
        else ("OPENAI_MODEL", settings.openai_model)
    )
    try:
        if threads:
            assert settings.openai_assistant_id is not None
            await client.beta.assistants.retrieve(settings.openai_assistant_id)
        else:
            await client.models.retrieve(settings.openai_model)
    except openai.APIConnectionError as exc:
        detail = "connection refused" if connection_refused(exc) else _connection_detail(exc)
        raise StartupError(f"cannot reach OpenAI at OPENAI_BASE_URL {url} ({detail})") from None
    except openai.AuthenticationError:
        raise StartupError(
            f"OpenAI at {url} rejected OPENAI_API_KEY (HTTP 401): set it to a valid API key"
        ) from None
    except openai.PermissionDeniedError as exc:
        raise StartupError(
            f"OpenAI at {url} refused OPENAI_API_KEY access to {setting} {value} "
            f"(HTTP 403: {_first_line(exc.message)})"
        ) from None
    except openai.NotFoundError as exc:
        if _endpoint_missing(exc):
            if (suggestion := setup_rules.v1_suggestion(url)) is not None:
                raise StartupError(
                    f"OPENAI_BASE_URL {url} has no such endpoint (HTTP 404 looking up "
                    f"{setting}): did you mean {suggestion}?"
                ) from None
            log.warning(
                "OpenAI at %s cannot look up %s (HTTP 404, no such endpoint): starting "
                "without checking it",
                url,
                setting,
            )
            return
        what = "an assistant" if threads else "a model"
        raise StartupError(
            f"{setting} {value} is not {what} this OPENAI_API_KEY can use at {url} (HTTP 404)"
        ) from None
    except openai.APIStatusError as exc:
        raise StartupError(
            f"OpenAI at OPENAI_BASE_URL {url} answered HTTP {exc.status_code} when checking "
            f"{setting}: {_first_line(exc.message)}"
        ) from None
    finally:
        await client.close()


async def check_azure(settings: Settings) -> None:
    """Azure OpenAI: the endpoint answers, the key or the Entra ID sign-in is accepted, and
    the API version is one Azure serves (`models.list`); the threads backend's assistant
    exists. Azure names deployments, not models: a wrong deployment shows at the first
    answer."""
    endpoint = settings.azure_openai_endpoint
    if settings.azure_auth == "entra":
        try:
            import azure.identity.aio  # noqa: F401  (only with Entra ID: the azure extra)
        except ImportError:
            raise StartupError(
                "AZURE_OPENAI_AUTH=entra needs azure-identity: pip install '.[azure]' "
                "(or pip install azure-identity)"
            ) from None
    credential = "Entra ID sign-in" if settings.azure_auth == "entra" else "AZURE_OPENAI_API_KEY"
    version = setup_rules.azure_api_version(settings.assistant_api, settings.openai_api_version)
    client = make_client(settings, max_retries=0, timeout_s=OPENAI_CHECK_TIMEOUT_S)
    try:
        await client.models.list()
        if settings.assistant_api == "threads":
            assert settings.openai_assistant_id is not None
            await client.beta.assistants.retrieve(settings.openai_assistant_id)
    except openai.APIConnectionError as exc:
        if (signin := _entra_failure(exc)) is not None:
            raise StartupError(
                f"Entra ID sign-in for Azure OpenAI failed ({signin}): sign in with "
                "`az login`, or give the bot a managed identity or AZURE_CLIENT_ID, "
                "AZURE_TENANT_ID and AZURE_CLIENT_SECRET"
            ) from None
        detail = "connection refused" if connection_refused(exc) else _connection_detail(exc)
        raise StartupError(
            f"cannot reach Azure OpenAI at AZURE_OPENAI_ENDPOINT {endpoint} ({detail})"
        ) from None
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise StartupError(
            f"Azure OpenAI at {endpoint} rejected the {credential} (HTTP {exc.status_code}: "
            f"{_first_line(exc.message)})"
        ) from None
    except openai.NotFoundError as exc:
        if settings.assistant_api == "threads" and "assistant" in str(exc.message).lower():
            raise StartupError(
                f"OPENAI_ASSISTANT_ID {settings.openai_assistant_id} is not an assistant at "
                f"Azure OpenAI {endpoint} (HTTP 404)"
            ) from None
        raise StartupError(
            f"AZURE_OPENAI_ENDPOINT {endpoint} with OPENAI_API_VERSION {version} answered "
            "HTTP 404: check the resource's endpoint (https://NAME.openai.azure.com) and the "
            "API version"
        ) from None
    except openai.APIStatusError as exc:
        raise StartupError(
            f"Azure OpenAI at {endpoint} answered HTTP {exc.status_code} with OPENAI_API_VERSION "
            f"{version}: {_first_line(exc.message)}"
        ) from None
    except Exception as exc:  # azure-identity's ClientAuthenticationError and kin
        if (signin := _entra_failure(exc)) is None:
            raise
        raise StartupError(
            f"Entra ID sign-in for Azure OpenAI failed ({signin}): sign in with `az login`, "
            "or give the bot a managed identity or AZURE_CLIENT_ID, AZURE_TENANT_ID and "
            "AZURE_CLIENT_SECRET"
        ) from None
    finally:
        await client.close()


def _entra_failure(exc: BaseException) -> str | None:
    """azure-identity's error, if that is what failed (it may be wrapped by the SDK)."""
    current: BaseException | None = exc
    while current is not None:
        if type(current).__module__.startswith(("azure.core", "azure.identity")):
            text = str(current)
            tried = [line.strip() for line in text.splitlines() if line.startswith("\t")]
            return "; ".join(tried)[:200] or _first_line(text) or type(current).__name__
        current = current.__cause__ or current.__context__
    return None


def _endpoint_missing(exc: openai.NotFoundError) -> bool:
    """A 404 for the endpoint itself rather than for the model or assistant asked about."""
    body = exc.body
    if not isinstance(body, dict):
        return True
    error = body.get("error", body)
    if not isinstance(error, dict) or not error.get("message"):
        return True
    return str(error["message"]).startswith("Invalid URL")


def _connection_detail(exc: openai.APIConnectionError) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return f"no answer within {OPENAI_CHECK_TIMEOUT_S:g} s"
    cause = exc.__cause__ or exc.__context__
    return type(cause or exc).__name__


def _first_line(text: str) -> str:
    return (text.splitlines() or [""])[0][:160]
