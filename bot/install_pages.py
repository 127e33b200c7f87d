"""The web pages a workspace admin sees when installing the bot by OAuth (pure: HTML out).

`install_page` is `GET /slack/install`: what the app does, the scopes it asks for and why,
what it stores, and an Add to Slack button. `installed_page` is where Slack sends the admin
back after approving; `failed_page` says in plain words why an install did not happen.
Every page is self-contained (inline CSS, no images, fonts or scripts from elsewhere), so it
works behind a proxy that blocks the internet; every interpolated value is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from html import escape

APP_NAME = "Assistant"
APP_SUMMARY = (
    "An AI assistant for your workspace, backed by OpenAI. Mention it in a channel, or write "
    "to it in its Messages tab, and it answers in the thread; every thread is its own "
    "conversation."
)
INSTALL_PATH = "/slack/install"
SECURITY_DOC = "docs/security.md"

SCOPE_REASONS: dict[str, str] = {
    "app_mentions:read": "to see when someone @mentions it, so it can answer",
    "assistant:write": "to appear as an assistant in Slack's AI surfaces (its Messages tab)",
    "channels:history": "to read the thread it was asked in (public channels it was invited to)",
    "groups:history": "to read the thread it was asked in (private channels it was invited to)",
    "im:history": "to read the direct messages people send it",
    "mpim:history": "to read group direct messages it was added to",
    "chat:write": "to post its answers",
    "users:read": "to know people's names and time zones when it answers them",
    "files:read": "to read files shared in a thread it answers",
    "files:write": "to share files it makes in its answers",
    "commands": "for /assistant, the channel settings command",
}
"""Why each scope is asked for, in words an admin approving the install understands."""

UNKNOWN_SCOPE_REASON = "added to this app's scopes by whoever runs it (SLACK_SCOPES)"


class InstallFailure(StrEnum):
    """Why an install did not finish, as the admin needs to hear it."""

    CANCELLED = "cancelled"
    OTHER_BROWSER = "other_browser"
    EXPIRED = "expired"
    NOT_CONFIRMED = "not_confirmed"
    NOT_SAVED = "not_saved"
    SLACK_REFUSED = "slack_refused"


_FAILURES: dict[str, InstallFailure] = {
    "access_denied": InstallFailure.CANCELLED,
    "invalid_browser": InstallFailure.OTHER_BROWSER,
    "invalid_state": InstallFailure.EXPIRED,
    "missing_code": InstallFailure.NOT_CONFIRMED,
    "invalid_code": InstallFailure.NOT_CONFIRMED,
    "storage_error": InstallFailure.NOT_SAVED,
}

FAILURE_TEXTS: dict[InstallFailure, tuple[str, str]] = {
    InstallFailure.CANCELLED: (
        "The install was cancelled",
        "Slack's approval page was closed or the request was declined, so nothing was "
        "installed. You can start again whenever you are ready.",
    ),
    InstallFailure.OTHER_BROWSER: (
        "Please start the install from the beginning",
        "This page was opened in a different browser from the one that started the install, "
        "or it was reloaded. For your workspace's safety the install has to begin and end in "
        "the same browser.",
    ),
    InstallFailure.EXPIRED: (
        "This install link has expired",
        "Each install link works once and for a few minutes only. Start again to get a fresh one.",
    ),
    InstallFailure.NOT_CONFIRMED: (
        "Slack did not confirm the install",
        "Slack's approval did not come back in a form the app could use (it may have been "
        "used already). Nothing was installed; start again.",
    ),
    InstallFailure.NOT_SAVED: (
        "The app could not save the install",
        "Slack approved it, but the app's server could not store it. Try again in a minute; "
        "if it keeps happening, tell whoever runs the app: its log has the details.",
    ),
    InstallFailure.SLACK_REFUSED: (
        "Slack stopped the install",
        "Slack reported a problem before the app was added. Start again; if it keeps "
        "happening, a workspace admin may need to approve the app first.",
    ),
}


_ERROR_CODE = re.compile(r"[a-z0-9_]{1,64}")


def failure_of(reason: str) -> InstallFailure:
    """The kind of failure behind Bolt's reason (its own codes, or the `error` Slack sent)."""
    return _FAILURES.get(reason, InstallFailure.SLACK_REFUSED)


def scope_reasons(scopes: Sequence[str]) -> list[tuple[str, str]]:
    """Each scope asked for with the reason it is needed, in the order asked."""
    return [(scope, SCOPE_REASONS.get(scope, UNKNOWN_SCOPE_REASON)) for scope in scopes]


def storage_text(*, delete_on_uninstall: bool) -> str:
    """What the app keeps, and until when (plain text; the page escapes it)."""
    kept = (
        "It stores the messages of the threads it answers, its answers, feedback and usage "
        "counts, in its own database, so it can follow a conversation and report costs. "
        "They stay until whoever runs the app deletes them (python -m bot purge)"
    )
    if delete_on_uninstall:
        return kept + ", and all of it is deleted when you uninstall the app."
    return kept + "; uninstalling the app stops it but does not delete them."


def install_page(
    *,
    authorize_url: str,
    scopes: Sequence[str],
    delete_on_uninstall: bool,
    app_name: str = APP_NAME,
) -> str:
    """`GET /slack/install`: the app, its scopes and why, what it stores, Add to Slack."""
    rows = "\n".join(
        f"<li><code>{escape(scope)}</code> <span>{escape(reason)}</span></li>"
        for scope, reason in scope_reasons(scopes)
    )
    body = f"""
<h1>Add {escape(app_name)} to your Slack workspace</h1>
<p class="lead">{escape(APP_SUMMARY)}</p>
<p><a class="button" href="{escape(authorize_url)}">{_SLACK_MARK}Add to Slack</a></p>
<h2>What it asks Slack for</h2>
<ul class="scopes">
{rows}
</ul>
<h2>What it stores</h2>
<p>{escape(storage_text(delete_on_uninstall=delete_on_uninstall))}
Details: <code>{escape(SECURITY_DOC)}</code> in the app's documentation.</p>
"""
    return _page(f"Add {app_name} to Slack", body)


def installed_page(
    *,
    workspace: str | None,
    org_wide: bool,
    app_name: str = APP_NAME,
) -> str:
    """Where the admin lands after approving: the workspace's name and what to do next."""
    where = escape(workspace) if workspace else "your workspace"
    scope = "organisation" if org_wide else "workspace"
    body = f"""
<p class="badge ok">Installed</p>
<h1>{escape(app_name)} is now in {where}</h1>
<p class="lead">Everyone in the {scope} can use it. Next steps:</p>
<ol class="steps">
<li><strong>Invite it to a channel:</strong> type <code>/invite @{escape(app_name)}</code>
in the channel, then mention it with a question.</li>
<li><strong>Talk to it privately:</strong> open {escape(app_name)} in Slack's sidebar and use
its <em>Messages</em> tab.</li>
<li><strong>See what it can do:</strong> type <code>/assistant help</code> in any channel it
is in.</li>
</ol>
<p class="muted">You can close this page and return to Slack.</p>
"""
    return _page(f"{app_name} is installed", body)


def failed_page(*, reason: str, retry_url: str = INSTALL_PATH, app_name: str = APP_NAME) -> str:
    """The install did not finish: why, in plain words, and a link to start again. The
    reason's code is shown only when it looks like one (Slack's `error` comes from the
    address, which anyone can write: no sentences of theirs on our page)."""
    title, explanation = FAILURE_TEXTS[failure_of(reason)]
    code = (
        '<p class="muted">If you ask for help, mention this code: '
        f"<code>{escape(reason)}</code></p>"
        if _ERROR_CODE.fullmatch(reason)
        else ""
    )
    body = f"""
<p class="badge fail">Not installed</p>
<h1>{escape(title)}</h1>
<p class="lead">{escape(explanation)}</p>
<p><a class="button" href="{escape(retry_url)}">Start the install again</a></p>
{code}
"""
    return _page(f"{app_name}: {title}", body)


# A four-colour mark drawn inline, so the button needs nothing from Slack's CDN.
_SLACK_MARK = (
    '<svg class="mark" viewBox="0 0 20 20" aria-hidden="true">'
    '<rect x="2" y="8" width="16" height="4" rx="2" fill="#36C5F0"/>'
    '<rect x="8" y="2" width="4" height="16" rx="2" fill="#2EB67D"/>'
    '<rect x="2" y="8" width="6" height="4" rx="2" fill="#E01E5A"/>'
    '<rect x="8" y="12" width="4" height="6" rx="2" fill="#ECB22E"/>'
    "</svg>"
)

_STYLE = """
body { margin: 0; background: #f8f8fa; color: #1d1c1d;
  font: 16px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 640px; margin: 48px auto; padding: 32px 40px; background: #fff;
  border: 1px solid #e2e2e5; border-radius: 12px; }
h1 { font-size: 26px; line-height: 1.25; margin: 0 0 12px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
.lead { color: #454245; }
.muted { color: #6b6a6b; font-size: 14px; }
code { font: 13px Menlo, Consolas, monospace; background: #f4f4f6; color: #c01343;
  border: 1px solid #e2e2e5; border-radius: 4px; padding: 1px 4px; }
.button { display: inline-flex; align-items: center; gap: 10px; padding: 10px 20px;
  background: #fff; color: #1d1c1d; font-weight: 700; text-decoration: none;
  border: 1px solid #bbbabb; border-radius: 6px; }
.button:hover, .button:focus { background: #f4f4f6; border-color: #868686; }
.mark { width: 20px; height: 20px; }
.scopes { list-style: none; padding: 0; margin: 0; }
.scopes li { padding: 6px 0; border-bottom: 1px solid #f0f0f2; }
.scopes span { color: #454245; margin-left: 6px; }
.steps li { margin: 8px 0; }
.badge { display: inline-block; margin: 0 0 8px; padding: 2px 10px; border-radius: 999px;
  font-size: 13px; font-weight: 700; }
.ok { background: #e3f5ec; color: #007a5a; }
.fail { background: #fde8ec; color: #a10f3a; }
"""


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<main>{body}</main>
</body>
</html>
"""
