"""Files people attach to their messages: which ones reach the assistant, and how.

Images go to the model as image input; small text files are quoted into the message; anything
else (or anything too large) is named in a short note to the user instead of being dropped
silently.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/x-yaml",
        "application/yaml",
        "application/csv",
    }
)
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_TEXT_BYTES = 200 * 1024
MAX_FILES = 10
MAX_TURN_FILE_BYTES = 20 * 1024 * 1024
"""The most file bytes one turn holds in memory: a message with many large images would
otherwise hold up to MAX_FILES × MAX_IMAGE_BYTES, and a burst of turns many times that."""
DOWNLOAD_TIMEOUT_S = 30.0
"""One download's own limit, within what is left of the turn's answer deadline."""

# Slack serves `url_private` from its own domains: files.slack.com, workspace hosts such as
# acme.slack.com, and slack-gov.com for GovSlack. (slack-edge.com is Slack's public CDN; it
# never needs the bot token.)
SLACK_FILE_DOMAINS = ("slack.com", "slack-gov.com")


@dataclass(frozen=True)
class SlackFile:
    name: str
    mimetype: str
    size: int
    url: str


@dataclass(frozen=True)
class Image:
    name: str
    mimetype: str
    data: bytes


@dataclass
class FilePlan:
    """What to do with a message's files, decided before anything is downloaded."""

    images: list[SlackFile] = field(default_factory=list)
    texts: list[SlackFile] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


class DownloadProblem(enum.Enum):
    """Why a planned file did not reach the assistant; each is named to the user."""

    TOO_LARGE = "too_large"
    OVER_TURN_BUDGET = "over_turn_budget"
    FOREIGN_HOST = "foreign_host"
    NO_ACCESS = "no_access"
    TIMED_OUT = "timed_out"
    FAILED = "failed"


def problem_note(problem: DownloadProblem, *, limit: int, host: str = "") -> str:
    """The words, in brackets after the file's name, that tell the user why."""
    if problem is DownloadProblem.TOO_LARGE:
        return f"larger than {size_label(limit)}"
    if problem is DownloadProblem.OVER_TURN_BUDGET:
        return f"past the {size_label(MAX_TURN_FILE_BYTES)} of files I read per message"
    if problem is DownloadProblem.FOREIGN_HOST:
        return f"it is stored at {host or 'an unknown host'}, not on Slack, so I didn't fetch it"
    if problem is DownloadProblem.TIMED_OUT:
        return "the download took too long"
    if problem is DownloadProblem.NO_ACCESS:
        return "Slack would not let me download it"
    return "the download failed"


def url_host(url: str) -> str:
    """The host (and port, when given) a URL names, for telling the user; "" when unreadable."""
    try:
        parts = urlsplit(url)
        return parts.netloc.rpartition("@")[2].lower() if parts.hostname else ""
    except ValueError:
        return ""


def may_send_token(url: str, *, slack_api_url: str) -> bool:
    """Whether a file URL may receive the bot token: only Slack's own hosts over HTTPS, or
    exactly the scheme, host and port of SLACK_API_URL (a proxy, or a local fake in tests).

    A file's `url_private` can name any host (remote files), and whoever runs that host
    would otherwise get a token that reads the whole workspace.
    """
    try:
        target = urlsplit(url)
        api = urlsplit(slack_api_url)
        target_port, api_port = target.port, api.port
    except ValueError:
        return False
    host = (target.hostname or "").rstrip(".")
    if not host or target.username is not None or target.password is not None:
        return False
    same_as_api = (
        target.scheme.lower() == api.scheme.lower()
        and host == (api.hostname or "").rstrip(".")
        and _port(target.scheme, target_port) == _port(api.scheme, api_port)
    )
    if same_as_api:
        return True
    on_slack = any(host == domain or host.endswith("." + domain) for domain in SLACK_FILE_DOMAINS)
    return on_slack and target.scheme.lower() == "https" and target_port in (None, 443)


def _port(scheme: str, port: int | None) -> int | None:
    if port is not None:
        return port
    return {"https": 443, "http": 80}.get(scheme.lower())


def parse_files(raw: str | None) -> list[SlackFile]:
    """The `files` of a Slack message event, as stored with the message."""
    if not raw:
        return []
    files: list[SlackFile] = []
    for entry in json.loads(raw):
        if not isinstance(entry, dict):
            continue
        url = entry.get("url_private_download") or entry.get("url_private")
        files.append(
            SlackFile(
                name=str(entry.get("name") or entry.get("title") or "file"),
                mimetype=str(entry.get("mimetype") or ""),
                size=int(entry.get("size") or 0),
                url=str(url or ""),
            )
        )
    return files


def plan_files(files: list[SlackFile]) -> FilePlan:
    plan = FilePlan()
    for index, file in enumerate(files):
        if index >= MAX_FILES:
            plan.refused.append(f"{file.name} (only {MAX_FILES} files per message are read)")
        elif not file.url:
            plan.refused.append(f"{file.name} (Slack did not share it with the bot)")
        elif file.mimetype in IMAGE_TYPES:
            _admit(plan.images, plan.refused, file, MAX_IMAGE_BYTES)
        elif file.mimetype.startswith("text/") or file.mimetype in TEXT_TYPES:
            _admit(plan.texts, plan.refused, file, MAX_TEXT_BYTES)
        else:
            plan.refused.append(f"{file.name} (this kind of file isn't supported)")
    return plan


def _admit(into: list[SlackFile], refused: list[str], file: SlackFile, limit: int) -> None:
    if file.size > limit:
        refused.append(f"{file.name} (larger than {size_label(limit)})")
    else:
        into.append(file)


def size_label(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size // (1024 * 1024)} MB"
    return f"{size // 1024} KB"


def file_limit(file: SlackFile) -> int:
    """The most bytes read for a file of its kind (see `plan_files`)."""
    return MAX_IMAGE_BYTES if file.mimetype in IMAGE_TYPES else MAX_TEXT_BYTES


def quoted_text_file(name: str, data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return f"Attached file {name}:\n```\n{text}\n```"


def refusal_note(refused: list[str]) -> str:
    return "I couldn't read " + "; ".join(refused) + ". I'll answer from the rest."


def image_data_url(image: Image) -> str:
    return f"data:{image.mimetype};base64,{base64.b64encode(image.data).decode()}"


def slack_file_entries(files: Any) -> str | None:
    """The subset of Slack's file objects worth storing with a message."""
    if not isinstance(files, list) or not files:
        return None
    keep = ("name", "title", "mimetype", "size", "url_private", "url_private_download")
    return json.dumps([{k: f.get(k) for k in keep} for f in files if isinstance(f, dict)])
