"""The one Slack error policy: each error Slack answers with, what it means for the bot."""

from __future__ import annotations

import logging

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.slack_response import SlackResponse

from bot.slack.errors import SlackErrorKind, best_effort, classify, kind_of

Kind = SlackErrorKind


def slack_error(error: str | None, *, status: int = 200) -> SlackApiError:
    data = {"ok": False} if error is None else {"ok": False, "error": error}
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.com/api/chat.postMessage",
        req_args={},
        data=data,
        headers={},
        status_code=status,
    )
    return SlackApiError(f"The request failed: {error}", response)


@pytest.mark.parametrize(
    ("error", "status", "kind", "drops_answer", "token_unusable"),
    [
        ("channel_not_found", 200, Kind.PERMANENT, True, False),
        ("is_archived", 200, Kind.PERMANENT, True, False),
        ("not_in_channel", 200, Kind.PERMANENT, True, False),
        ("msg_too_long", 200, Kind.PERMANENT, True, False),
        ("no_text", 200, Kind.PERMANENT, True, False),
        ("invalid_blocks", 200, Kind.PERMANENT, True, False),
        ("restricted_action", 200, Kind.PERMANENT, True, False),
        ("message_not_found", 200, Kind.GONE, True, False),
        ("cant_update_message", 200, Kind.GONE, True, False),
        ("invalid_auth", 200, Kind.DEAD_TOKEN, True, True),
        ("account_inactive", 200, Kind.DEAD_TOKEN, True, True),
        # Expired: forgotten so that the next try refreshes it; the answer is tried again.
        ("token_expired", 200, Kind.EXPIRED_TOKEN, False, True),
        ("token_revoked", 200, Kind.APP_GONE, True, True),
        ("app_uninstalled", 200, Kind.APP_GONE, True, True),
        ("missing_scope", 200, Kind.NOT_ALLOWED, False, False),
        ("not_allowed_token_type", 200, Kind.NOT_ALLOWED, False, False),
        ("feature_not_enabled", 200, Kind.NOT_ALLOWED, False, False),
        ("team_not_allowed", 200, Kind.NOT_ALLOWED, False, False),
        ("access_denied", 200, Kind.NOT_ALLOWED, False, False),
        ("not_allowed", 200, Kind.NOT_ALLOWED, False, False),
        ("ratelimited", 200, Kind.RATE_LIMITED, False, False),
        ("ratelimited", 429, Kind.RATE_LIMITED, False, False),
        ("", 429, Kind.RATE_LIMITED, False, False),
        ("internal_error", 200, Kind.TRANSIENT, False, False),
        ("fatal_error", 500, Kind.TRANSIENT, False, False),
        ("invalid_action_token", 200, Kind.TRANSIENT, False, False),
        ("", 200, Kind.TRANSIENT, False, False),
    ],
)
def test_each_error_has_one_kind(
    error: str, status: int, kind: SlackErrorKind, drops_answer: bool, token_unusable: bool
) -> None:
    assert kind_of(error, status=status) is kind
    assert classify(slack_error(error, status=status)) is kind
    assert kind.drops_answer is drops_answer
    assert kind.token_unusable is token_unusable


def test_an_answer_without_an_error_string_is_transient() -> None:
    assert classify(slack_error(None)) is Kind.TRANSIENT


async def test_a_best_effort_call_logs_slacks_error_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with best_effort("the status was not set", level=logging.INFO):
        raise slack_error("channel_not_found")
    (record,) = [r for r in caplog.records if r.name == "bot.slack.errors"]
    assert (record.levelno, record.getMessage()) == (
        logging.INFO,
        "the status was not set: channel_not_found",
    )


async def test_a_best_effort_call_lets_other_failures_through() -> None:
    with pytest.raises(TimeoutError):
        async with best_effort("the status was not set"):
            raise TimeoutError
