"""The benchmark's baseline: the least a Slack bot can do to stream an answer to a mention.

    python -m bench.baseline_bot

slack-bolt (async) in Socket Mode; `app_mention` → one streamed answer: the openai SDK's
Responses stream (`responses.stream`), shown with `chat.startStream` (the first words),
`chat.appendStream` (each further delta) and `chat.stopStream`. No storage, no retries, no
history, no dedupe, no lease: what a crash or a redelivery costs is not its concern. It is
the yardstick the peer workload (bench/peer.py) divides the bot's figures by, so "how much
does the bot's guarantees cost" reads as a ratio rather than as raw numbers from a noisy
machine.

Configured like the bot: SLACK_BOT_TOKEN, SLACK_APP_TOKEN, SLACK_API_URL, OPENAI_API_KEY,
OPENAI_BASE_URL, OPENAI_MODEL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from typing import Any

import openai
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

MENTION_RE = re.compile(r"<@[A-Z0-9]+>\s*")


def build_app(env: dict[str, str]) -> tuple[AsyncApp, openai.AsyncOpenAI]:
    client = AsyncWebClient(
        token=env["SLACK_BOT_TOKEN"], base_url=env.get("SLACK_API_URL", "https://slack.com/api/")
    )
    app = AsyncApp(client=client, token=env["SLACK_BOT_TOKEN"])
    model = openai.AsyncOpenAI(
        api_key=env["OPENAI_API_KEY"], base_url=env.get("OPENAI_BASE_URL") or None
    )
    model_name = env.get("OPENAI_MODEL", "gpt-5-mini")

    @app.event("app_mention")
    async def on_mention(
        event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        channel, thread_ts = event["channel"], event.get("thread_ts") or event["ts"]
        # A stream in a channel names whom it is for (Slack requires both fields there).
        recipient = {
            "recipient_team_id": event.get("team") or body.get("team_id"),
            "recipient_user_id": event.get("user"),
        }
        question = MENTION_RE.sub("", event.get("text", ""))
        stream_ts: str | None = None
        async with model.responses.stream(model=model_name, input=question) as stream:
            async for item in stream:
                if item.type != "response.output_text.delta" or not item.delta:
                    continue
                if stream_ts is None:
                    started = await client.chat_startStream(
                        channel=channel,
                        thread_ts=thread_ts,
                        markdown_text=item.delta,
                        **recipient,
                    )
                    stream_ts = str(started["ts"])
                else:
                    await client.chat_appendStream(
                        channel=channel, ts=stream_ts, markdown_text=item.delta
                    )
        if stream_ts is not None:
            await client.chat_stopStream(channel=channel, ts=stream_ts)

    return app, model


async def main() -> None:
    env = dict(os.environ)
    app, model = build_app(env)
    handler = AsyncSocketModeHandler(app, env["SLACK_APP_TOKEN"], web_client=app.client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    logging.getLogger("baseline").info("ready: Socket Mode connected")
    await stop.wait()
    await handler.close_async()  # type: ignore[no-untyped-call]
    await model.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
