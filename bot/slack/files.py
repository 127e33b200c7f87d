"""Files people share, downloaded whole within size and time caps, the token only ever sent
to Slack's own file hosts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bot.attachments import (
    DOWNLOAD_TIMEOUT_S,
    MAX_TURN_FILE_BYTES,
    DownloadProblem,
    FilePlan,
    Image,
    SlackFile,
    file_limit,
    may_send_token,
    problem_note,
    url_host,
)

log = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
_MAX_REDIRECTS = 3


@dataclass
class FetchedFiles:
    """What a turn's files gave: images for the model, text files to quote, and the files
    that could not be read, each as "name (why)" for the note to the user."""

    images: list[Image] = field(default_factory=list)
    texts: list[tuple[str, bytes]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


class FileUnavailable(Exception):
    """A shared file could not be downloaded (no access, gone, or larger than allowed)."""

    def __init__(self, problem: DownloadProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


async def download_files(
    client: AsyncWebClient, plan: FilePlan, *, deadline_at: float
) -> FetchedFiles:
    """Download a turn's planned files, one at a time, within the turn's deadline and a
    budget of MAX_TURN_FILE_BYTES for all of them; what cannot be read is named."""
    fetched = FetchedFiles()
    budget = MAX_TURN_FILE_BYTES
    async with aiohttp.ClientSession() as http:
        for file in [*plan.images, *plan.texts]:
            limit = file_limit(file)
            try:
                data = await _download_within(
                    http, file, limit=limit, budget=budget, deadline_at=deadline_at, client=client
                )
            except FileUnavailable as exc:
                log.warning("a file could not be downloaded: %s", exc.problem.value)
                note = problem_note(exc.problem, limit=limit, host=url_host(file.url))
                fetched.refused.append(f"{file.name} ({note})")
                continue
            budget -= len(data)
            if file in plan.images:
                fetched.images.append(Image(file.name, file.mimetype, data))
            else:
                fetched.texts.append((file.name, data))
    return fetched


async def _download_within(
    http: aiohttp.ClientSession,
    file: SlackFile,
    *,
    limit: int,
    budget: int,
    deadline_at: float,
    client: AsyncWebClient,
) -> bytes:
    if file.size > budget:
        raise FileUnavailable(DownloadProblem.OVER_TURN_BUDGET)
    remaining_s = deadline_at - time.time()
    if remaining_s <= 0:
        raise FileUnavailable(DownloadProblem.TIMED_OUT)
    try:
        return await download(
            file.url,
            client=client,
            max_bytes=min(limit, budget),
            timeout_s=min(DOWNLOAD_TIMEOUT_S, remaining_s),
            http=http,
        )
    except FileUnavailable as exc:
        if exc.problem is DownloadProblem.TOO_LARGE and budget < limit:
            raise FileUnavailable(DownloadProblem.OVER_TURN_BUDGET) from exc
        raise


async def download(
    url: str,
    *,
    client: AsyncWebClient,
    max_bytes: int,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
    http: aiohttp.ClientSession | None = None,
) -> bytes:
    """A file's bytes from `url_private`, whole, with `client`'s bot token as Slack requires.

    The token goes only to Slack's own file hosts (see `may_send_token`); a URL elsewhere
    is refused before any request. A body over `max_bytes` is refused, never cut short.
    Without access Slack answers 200 with its sign-in page, so HTML counts as a failure.
    """
    slack_api_url = str(client.base_url)
    if not may_send_token(url, slack_api_url=slack_api_url):
        raise FileUnavailable(DownloadProblem.FOREIGN_HOST)
    token = str(client.token)
    try:
        async with asyncio.timeout(timeout_s):
            if http is None:
                async with aiohttp.ClientSession() as session:
                    return await _fetch(session, url, max_bytes, slack_api_url, token)
            return await _fetch(http, url, max_bytes, slack_api_url, token)
    except TimeoutError as exc:
        raise FileUnavailable(DownloadProblem.TIMED_OUT) from exc
    except aiohttp.ClientError as exc:
        log.warning("file download failed: %s", type(exc).__name__)
        raise FileUnavailable(DownloadProblem.FAILED) from exc


async def _fetch(
    http: aiohttp.ClientSession, url: str, max_bytes: int, slack_api_url: str, token: str
) -> bytes:
    """Follows redirects itself, so that the token never travels with a redirect to a
    host that may not have it (the hop is then made without the token)."""
    for _ in range(_MAX_REDIRECTS + 1):
        headers = {}
        if may_send_token(url, slack_api_url=slack_api_url):
            headers["Authorization"] = f"Bearer {token}"
        async with http.get(url, headers=headers, allow_redirects=False) as response:
            location = response.headers.get("Location")
            if response.status in {301, 302, 303, 307, 308} and location:
                url = urljoin(url, location)
                continue
            if response.status != 200 or response.content_type == "text/html":
                raise FileUnavailable(DownloadProblem.NO_ACCESS)
            return await read_whole_body(response, max_bytes=max_bytes)
    raise FileUnavailable(DownloadProblem.FAILED)


async def read_whole_body(response: aiohttp.ClientResponse, *, max_bytes: int) -> bytes:
    """The whole body, however it arrives (`content.read(n)` returns only what is buffered);
    more than `max_bytes`, announced or received, is refused rather than cut short."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise FileUnavailable(DownloadProblem.TOO_LARGE)
    data = bytearray()
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        data += chunk
        if len(data) > max_bytes:
            raise FileUnavailable(DownloadProblem.TOO_LARGE)
    return bytes(data)


async def upload_images(
    client: AsyncWebClient, *, channel_id: str, thread_ts: str, images: Sequence[Image]
) -> None:
    """Images the assistant made, into the thread, each under its own name."""
    await client.files_upload_v2(
        channel=channel_id,
        thread_ts=thread_ts,
        file_uploads=[
            {"content": image.data, "filename": image.name, "title": image.name} for image in images
        ],
    )
