"""A real headless Chromium for the tests, driven over the DevTools protocol with aiohttp.

No browser download and no driver package: Debian's `chromium` (`apt-get install chromium`)
is started with `--remote-debugging-port=0`, and one page is driven through its websocket
(navigate, click, read the DOM, take a screenshot). Tests skip with `BROWSER_MISSING` where no
binary is found.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER_MISSING = "no Chromium binary (install Debian's `chromium` package, or set CHROMIUM)"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)


def chromium_binary() -> str | None:
    """The Chromium to use: $CHROMIUM, else the first of the usual names on PATH."""
    given = os.environ.get("CHROMIUM")
    if given:
        return given if shutil.which(given) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Page:
    """One browser tab. `requests` lists every URL it asked for, in order."""

    ws: aiohttp.ClientWebSocketResponse
    requests: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _waiting: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _loads: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    _reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read())
        for domain in ("Page", "Network", "Runtime"):
            await self.send(f"{domain}.enable")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.ws.close()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[call] = answer
        await self.ws.send_str(json.dumps({"id": call, "method": method, "params": params}))
        reply = await asyncio.wait_for(answer, timeout=30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data:
                waiter = self._waiting.pop(data["id"], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(data)
            elif data.get("method") == "Page.loadEventFired":
                self._loads.put_nowait(None)
            elif data.get("method") == "Network.requestWillBeSent":
                self.requests.append(data["params"]["request"]["url"])

    async def open(self, url: str) -> None:
        """Go to `url` and wait until it (and any redirects) has loaded."""
        self._drain_loads()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._loads.get(), timeout=30)

    async def click(self, selector: str) -> None:
        """Click the element and wait for the page it leads to (redirects followed)."""
        self._drain_loads()
        found = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.click(); return true; })()"
        )
        assert found, f"nothing matches {selector!r} on {await self.url()}"
        await asyncio.wait_for(self._loads.get(), timeout=30)

    def _drain_loads(self) -> None:
        while not self._loads.empty():
            self._loads.get_nowait()

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def url(self) -> str:
        return str(await self.evaluate("location.href"))

    async def text(self) -> str:
        """What a reader sees: the page's rendered text."""
        return str(await self.evaluate("document.body.innerText"))

    async def links(self) -> dict[str, str]:
        """Each link's text → its (absolute) address."""
        found = await self.evaluate(
            "Object.fromEntries([...document.querySelectorAll('a')]"
            ".map(a => [a.innerText.trim(), a.href]))"
        )
        return dict(found)

    async def screenshot(self, path: Path, *, width: int = 900) -> None:
        """The whole page, `width` CSS pixels wide, as a PNG."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=600,
            deviceScaleFactor=1,
            mobile=False,
        )
        metrics = await self.send("Page.getLayoutMetrics")
        height = int(metrics["cssContentSize"]["height"]) + 1
        shot = await self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@contextlib.asynccontextmanager
async def headless_page(binary: str) -> AsyncIterator[Page]:
    """A fresh Chromium (its own empty profile) with one blank tab."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        drain: asyncio.Task[bytes] | None = None
        try:
            endpoint = await asyncio.wait_for(_devtools_endpoint(process), timeout=60)
            assert process.stderr is not None
            drain = asyncio.create_task(process.stderr.read())  # a full pipe would block it
            async with aiohttp.ClientSession() as http:
                async with http.put(f"http://{endpoint}/json/new?about:blank") as made:
                    target = await made.json()
                ws = await http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
                page = Page(ws)
                await page.start()
                try:
                    yield page
                finally:
                    await page.close()
        finally:
            if process.returncode is None:
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
            if drain is not None:
                await asyncio.gather(drain, return_exceptions=True)


async def _devtools_endpoint(process: asyncio.subprocess.Process) -> str:
    """host:port from Chromium's "DevTools listening on ws://…" line."""
    assert process.stderr is not None
    async for raw in process.stderr:
        found = re.search(r"DevTools listening on ws://([^/]+)/", raw.decode(errors="replace"))
        if found:
            return found.group(1)
    raise RuntimeError(f"Chromium exited ({await process.wait()}) without a DevTools endpoint")
