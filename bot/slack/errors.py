"""The one Slack error policy: what an error from Slack's Web API means for the bot.

`classify` sorts an error into a `SlackErrorKind`; callers act on the kind (forget the token,
drop the answer, read less, try again later), never on Slack's error strings. Calls whose
failure must not stop anything (the status line, the title, an ephemeral note, ending a stream
that may have ended) go through `best_effort`.

Which layer retries what:

| Layer (where)                          | Retries                                            |
|----------------------------------------|----------------------------------------------------|
| slack_sdk handlers (`slack.client`)    | every Web API call: connection errors ×3, 5xx ×3,  |
|                                        | RATE_LIMITED ×5 waiting Retry-After                |
| thread reading (`slack.threads`)       | no RATE_LIMITED: the read stops, marked partial    |
| OpenAI SDK (`assistants`)              | one model request, `OPENAI_MAX_RETRIES` times      |
| turn runner `RetryPolicy` (`turns`)    | an unavailable assistant API, until the deadline   |
| dispatcher `RetryPolicy`               | a turn step that raised (TRANSIENT, EXPIRED_TOKEN, |
|                                        | no token): later, resuming where it stopped        |
| token refresh (`slack_tokens`)         | storing a refreshed token                          |

An answer Slack refuses for good (`drops_answer`) is not retried by anyone: it is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum

from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


class SlackErrorKind(StrEnum):
    """What an error from Slack means for the bot."""

    PERMANENT = "permanent"
    """This request can never succeed as sent: the channel is gone, the bot is out of it,
    the content is refused."""
    DEAD_TOKEN = "dead_token"
    """The token will not work again: it is forgotten, and what it was for is dropped."""
    EXPIRED_TOKEN = "expired_token"
    """The token expired: it is forgotten, and the next try refreshes it."""
    APP_GONE = "app_gone"
    """The app was removed from the workspace (or its token revoked)."""
    GONE = "gone"
    """The message acted on no longer exists, or can no longer be changed."""
    NOT_ALLOWED = "not_allowed"
    """The workspace or the app's scopes do not allow this method."""
    RATE_LIMITED = "rate_limited"
    """Slack asks to wait (HTTP 429)."""
    TRANSIENT = "transient"
    """Anything else: it may work later."""

    @property
    def token_unusable(self) -> bool:
        """The cached token must not be used again: the next call reads the store."""
        return self in {
            SlackErrorKind.DEAD_TOKEN,
            SlackErrorKind.EXPIRED_TOKEN,
            SlackErrorKind.APP_GONE,
        }

    @property
    def drops_answer(self) -> bool:
        """Posting (or editing) the answer again cannot succeed: it is dropped."""
        return self in {
            SlackErrorKind.PERMANENT,
            SlackErrorKind.DEAD_TOKEN,
            SlackErrorKind.APP_GONE,
            SlackErrorKind.GONE,
        }


_KINDS: dict[str, SlackErrorKind] = {
    **dict.fromkeys(
        (
            "channel_not_found",
            "is_archived",
            "not_in_channel",
            "msg_too_long",
            "no_text",
            "invalid_blocks",
            "restricted_action",
        ),
        SlackErrorKind.PERMANENT,
    ),
    **dict.fromkeys(("invalid_auth", "account_inactive"), SlackErrorKind.DEAD_TOKEN),
    "token_expired": SlackErrorKind.EXPIRED_TOKEN,
    **dict.fromkeys(("token_revoked", "app_uninstalled"), SlackErrorKind.APP_GONE),
    **dict.fromkeys(("message_not_found", "cant_update_message"), SlackErrorKind.GONE),
    **dict.fromkeys(
        (
            "not_allowed_token_type",
            "missing_scope",
            "not_allowed",
            "feature_not_enabled",
            "team_not_allowed",
            "access_denied",
        ),
        SlackErrorKind.NOT_ALLOWED,
    ),
    "ratelimited": SlackErrorKind.RATE_LIMITED,
}


def kind_of(error: str, *, status: int = 200) -> SlackErrorKind:
    """The kind of Slack's `error` string, answered with HTTP `status` (pure)."""
    if status == 429:
        return SlackErrorKind.RATE_LIMITED
    return _KINDS.get(error, SlackErrorKind.TRANSIENT)


def error_code(exc: SlackApiError) -> str:
    """Slack's error string (`channel_not_found`, …), as logs and metrics name it."""
    return str(exc.response.get("error"))


def classify(exc: SlackApiError) -> SlackErrorKind:
    """The kind of a failed Web API call."""
    return kind_of(error_code(exc), status=exc.response.status_code)


@asynccontextmanager
async def best_effort(
    what: str, *, level: int = logging.WARNING, logger: logging.Logger = log
) -> AsyncIterator[None]:
    """A Slack call whose failure changes nothing else: the error is logged ("`what`:
    error") at `level` and swallowed."""
    try:
        yield
    except SlackApiError as exc:
        logger.log(level, "%s: %s", what, error_code(exc))
