"""Build and sign Slack Events API requests the way Slack sends them.

The builders produce the JSON Slack delivers (over HTTP, or as the ``payload`` of a Socket
Mode envelope, see ``FakeSlack.send_socket_event``); ``signed_headers`` / ``post_event``
add the ``X-Slack-Signature`` headers Slack computes with the app's signing secret, so a
Bolt app with request verification on accepts them.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import Any

import aiohttp
from slack_sdk.signature import SignatureVerifier

__all__ = [
    "block_actions",
    "channel_message",
    "dm_message",
    "event_envelope",
    "mention",
    "message_changed",
    "post_event",
    "post_form",
    "signed_headers",
    "slash_command",
    "url_verification",
    "view_submission",
]

_MENTION_RE = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
_SLACKBOT_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


def _event_context(event: dict[str, Any], team_id: str, api_app_id: str) -> str:
    """Opaque ``event_context``; Slack's is ``4-`` + base64 of a small JSON document."""
    context = {
        "et": event.get("type", ""),
        "tid": team_id,
        "aid": api_app_id,
        "cid": event.get("channel", ""),
    }
    encoded = base64.urlsafe_b64encode(json.dumps(context, separators=(",", ":")).encode())
    return "4-" + encoded.decode().rstrip("=")


def event_envelope(
    event: dict[str, Any],
    *,
    team_id: str = "T0001",
    api_app_id: str = "A0001",
    event_id: str | None = None,
    event_time: int | None = None,
    bot_user_id: str = "UBOT",
    verification_token: str = "fake-verification-token",
    enterprise_id: str | None = None,
    is_enterprise_install: bool = False,
) -> dict[str, Any]:
    """Wrap ``event`` in an ``event_callback`` body; ``event_id`` is unique when omitted.

    For an Enterprise Grid workspace, ``enterprise_id`` names its organisation; with
    ``is_enterprise_install`` the app is installed org-wide, and Slack's authorization then
    names the organisation, not the workspace (the body's ``team_id`` still does)."""
    body: dict[str, Any] = {
        "token": verification_token,
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or "Ev" + uuid.uuid4().hex[:12].upper(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": enterprise_id,
                "team_id": None if is_enterprise_install else team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": is_enterprise_install,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": _event_context(event, team_id, api_app_id),
    }
    if enterprise_id is not None:
        body["enterprise_id"] = enterprise_id
        body["is_ext_shared_channel"] = False
    return body


def _rich_text_blocks(text: str) -> list[dict[str, Any]]:
    """The ``rich_text`` block Slack attaches to human messages (user mentions resolved)."""
    elements: list[dict[str, Any]] = []
    position = 0
    for match in _MENTION_RE.finditer(text):
        if match.start() > position:
            elements.append({"type": "text", "text": text[position : match.start()]})
        elements.append({"type": "user", "user_id": match.group(1)})
        position = match.end()
    if position < len(text):
        elements.append({"type": "text", "text": text[position:]})
    block_id = uuid.uuid4().hex[:5]
    return [
        {
            "type": "rich_text",
            "block_id": block_id,
            "elements": [{"type": "rich_text_section", "elements": elements}],
        }
    ]


def mention(
    *,
    text: str,
    user: str,
    channel: str = "C0001",
    ts: str,
    thread_ts: str | None = None,
    team: str = "T0001",
) -> dict[str, Any]:
    """An ``app_mention`` event; ``text`` must contain the mention, e.g. ``"<@UBOT> hi"``."""
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts,
        "team": team,
        "client_msg_id": str(uuid.uuid4()),
        "blocks": _rich_text_blocks(text),
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def _message(
    *,
    text: str,
    user: str,
    channel: str,
    channel_type: str,
    ts: str,
    thread_ts: str | None,
    subtype: str | None,
    bot_id: str | None,
    team: str,
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "message"}
    if subtype is not None:
        event["subtype"] = subtype
    event.update({"user": user, "text": text, "ts": ts, "team": team})
    if bot_id is not None:
        # Messages posted with a bot token carry the bot user *and* the bot id.
        event["bot_id"] = bot_id
        event["app_id"] = "A0001"
    elif subtype is None:
        event["client_msg_id"] = str(uuid.uuid4())
        event["blocks"] = _rich_text_blocks(text)
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    event.update({"channel": channel, "event_ts": ts, "channel_type": channel_type})
    return event


def channel_message(
    *,
    text: str,
    user: str,
    channel: str = "C0001",
    ts: str,
    thread_ts: str | None = None,
    subtype: str | None = None,
    bot_id: str | None = None,
    team: str = "T0001",
) -> dict[str, Any]:
    """A ``message`` event in a public channel (``channel_type`` ``"channel"``)."""
    return _message(
        text=text,
        user=user,
        channel=channel,
        channel_type="channel",
        ts=ts,
        thread_ts=thread_ts,
        subtype=subtype,
        bot_id=bot_id,
        team=team,
    )


def dm_message(
    *,
    text: str,
    user: str,
    channel: str = "D0001",
    ts: str,
    thread_ts: str | None = None,
    subtype: str | None = None,
    bot_id: str | None = None,
    team: str = "T0001",
) -> dict[str, Any]:
    """A ``message`` event in a direct message with the bot (``channel_type`` ``"im"``)."""
    return _message(
        text=text,
        user=user,
        channel=channel,
        channel_type="im",
        ts=ts,
        thread_ts=thread_ts,
        subtype=subtype,
        bot_id=bot_id,
        team=team,
    )


def message_changed(
    *,
    text: str,
    previous_text: str,
    user: str,
    channel: str = "C0001",
    ts: str,
    edit_ts: str,
    thread_ts: str | None = None,
    channel_type: str = "channel",
) -> dict[str, Any]:
    """A ``message_changed`` event: the edited message is nested, the outer ts is new."""
    inner: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts}
    previous: dict[str, Any] = {"type": "message", "user": user, "text": previous_text, "ts": ts}
    if thread_ts is not None:
        inner["thread_ts"] = previous["thread_ts"] = thread_ts
    inner["edited"] = {"user": user, "ts": edit_ts}
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": inner,
        "previous_message": previous,
        "channel": channel,
        "hidden": True,
        "ts": edit_ts,
        "event_ts": edit_ts,
        "channel_type": channel_type,
    }


def url_verification(challenge: str = "fake-challenge") -> dict[str, Any]:
    """The body Slack sends when the Request URL is configured."""
    return {"token": "fake-verification-token", "challenge": challenge, "type": "url_verification"}


def signed_headers(
    body: bytes,
    *,
    signing_secret: str,
    timestamp: int | None = None,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
) -> dict[str, str]:
    """Headers Slack sends with an Events API request, signed for ``body``."""
    request_ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(
        timestamp=request_ts, body=body
    )
    if signature is None:  # only when timestamp is None, which it never is here
        raise ValueError("could not sign the request")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": _SLACKBOT_USER_AGENT,
        "X-Slack-Request-Timestamp": request_ts,
        "X-Slack-Signature": signature,
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return headers


async def post_event(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any] | bytes,
    *,
    signing_secret: str,
    timestamp: int | None = None,
    retry_num: int | None = None,
    signature: str | None = None,
    retry_reason: str = "http_timeout",
) -> tuple[int, str, float]:
    """POST a signed event like Slack does; return ``(status, body text, seconds taken)``.

    ``signature`` overrides the computed ``X-Slack-Signature`` (to test rejection).
    """
    payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    headers = signed_headers(
        payload,
        signing_secret=signing_secret,
        timestamp=timestamp,
        retry_num=retry_num,
        retry_reason=retry_reason,
    )
    if signature is not None:
        headers["X-Slack-Signature"] = signature
    started = time.monotonic()
    async with session.post(url, data=payload, headers=headers) as response:
        text = await response.text()
        status = response.status
    return status, text, time.monotonic() - started


# ---------------------------------------------------------------------------- interactivity
# Slash commands arrive as form fields; button clicks and modal submissions as one form
# field, ``payload``, holding JSON. Both are signed like events, over the raw form body.


def slash_command(
    *,
    text: str,
    user: str,
    channel: str = "C0001",
    command: str = "/assistant",
    team_id: str = "T0001",
    api_app_id: str = "A0001",
    trigger_id: str = "",
    response_url: str = "https://hooks.slack.com/commands/T0001/1/fake",
    enterprise_id: str | None = None,
    is_enterprise_install: bool = False,
) -> dict[str, str]:
    """The form fields of a slash command invocation, as Slack posts them (on Enterprise
    Grid with the organisation, and whether the app is installed org-wide)."""
    fields = {
        "token": "fake-verification-token",
        "team_id": team_id,
        "team_domain": "fake-workspace",
        "channel_id": channel,
        "channel_name": channel.lower(),
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "true" if is_enterprise_install else "false",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{uuid.uuid4().int % 10**12}.fake",
    }
    if enterprise_id is not None:
        fields.update(enterprise_id=enterprise_id, enterprise_name=f"Org {enterprise_id}")
    return fields


def block_actions(
    *,
    user: str,
    action_id: str,
    value: str,
    channel: str,
    message: dict[str, Any],
    trigger_id: str,
    team_id: str = "T0001",
    enterprise_id: str | None = None,
    is_enterprise_install: bool = False,
) -> dict[str, str]:
    """A button click (``block_actions``) as the ``payload`` form field."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": team_id},
        "api_app_id": "A0001",
        "token": "fake-verification-token",
        "container": {"type": "message", "message_ts": message.get("ts"), "channel_id": channel},
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": "fake-workspace"},
        "channel": {"id": channel, "name": channel.lower()},
        "message": message,
        "response_url": "https://hooks.slack.com/actions/T0001/1/fake",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": f"block-{action_id}",
                "value": value,
                "action_ts": str(time.time()),
            }
        ],
        **_grid(team_id, enterprise_id, is_enterprise_install),
    }
    return {"payload": json.dumps(payload)}


def view_submission(
    *,
    user: str,
    view: dict[str, Any],
    values: dict[str, Any],
    team_id: str = "T0001",
    enterprise_id: str | None = None,
    is_enterprise_install: bool = False,
) -> dict[str, str]:
    """A modal's submission (``view_submission``) with the input ``values`` the user gave."""
    submitted = {**view, "id": "V" + uuid.uuid4().hex[:10].upper(), "state": {"values": values}}
    payload = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "fake-workspace"},
        "user": {"id": user, "username": user.lower(), "team_id": team_id},
        "api_app_id": "A0001",
        "token": "fake-verification-token",
        "trigger_id": f"{uuid.uuid4().int % 10**12}.fake",
        "view": submitted,
        **_grid(team_id, enterprise_id, is_enterprise_install),
    }
    return {"payload": json.dumps(payload)}


def _grid(team_id: str, enterprise_id: str | None, is_enterprise_install: bool) -> dict[str, Any]:
    """What an interactivity payload adds on Enterprise Grid: the organisation (beside the
    workspace in ``team``, and alone in ``enterprise``) and whether the install is org-wide."""
    if enterprise_id is None:
        return {"enterprise": None, "is_enterprise_install": False}
    return {
        "team": {"id": team_id, "domain": "fake-workspace", "enterprise_id": enterprise_id},
        "enterprise": {"id": enterprise_id, "name": f"Org {enterprise_id}"},
        "is_enterprise_install": is_enterprise_install,
    }


async def post_form(
    session: aiohttp.ClientSession,
    url: str,
    fields: dict[str, str],
    *,
    signing_secret: str,
) -> tuple[int, str]:
    """POST signed form fields like Slack does; return ``(status, body text)``."""
    from urllib.parse import urlencode

    payload = urlencode(fields).encode()
    headers = signed_headers(payload, signing_secret=signing_secret)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with session.post(url, data=payload, headers=headers) as response:
        return response.status, await response.text()
