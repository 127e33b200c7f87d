"""Files people attach to their messages: which ones reach the assistant, and how.

Images go to the model as image input; small text files are quoted into the message; anything
else (or anything too large) is named in a short note to the user instead of being dropped
silently.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

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
