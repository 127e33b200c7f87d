"""The fake Slack and fake OpenAI as one long-running process, for bots in other processes or
containers: `python -m tests.fakes.serve --advertise fakes` (see deploy/compose-check.sh).

Slack's Socket Mode events go to the open connections in turn, as Slack spreads them over an
app's connections. A small control site drives a conversation load and reports who answered:

    GET  /status               {"socket_connections": 2}
    POST /mentions?count=20    mentions sent over Socket Mode, each waited for until answered;
                               {"sent", "answered", "most_replies_in_a_thread",
                                "acked_by_connection": {1: acks, 2: …},
                                "answered_from": {caller address: answers started}}
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

from aiohttp import web

from tests.fakes.events import event_envelope, mention
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack, SlackCall
from tests.harness import is_finished

ANSWERING_METHODS = frozenset({"chat.startStream", "chat.postMessage"})
"""The call that starts an answer in a thread: streamed, or a placeholder when polled."""


def answered_from(calls: list[SlackCall]) -> dict[str, int]:
    """How many answers each caller (a bot process, by address) started."""
    return dict(
        Counter(
            call.remote or "unknown"
            for call in calls
            if call.method in ANSWERING_METHODS and call.ok and call.args.get("thread_ts")
        )
    )


class Control:
    def __init__(self, slack: FakeSlack) -> None:
        self.slack = slack

    async def status(self, _: web.Request) -> web.Response:
        return web.json_response({"socket_connections": self.slack.socket_connections})

    async def mentions(self, request: web.Request) -> web.Response:
        count = int(request.query.get("count", "20"))
        timeout = float(request.query.get("timeout", "120"))
        threads = []
        for number in range(count):
            message = self.slack.add_message(
                "C0001", user="UALICE", text=f"<@UBOT> question {number}"
            )
            body = event_envelope(mention(text=message.text, user="UALICE", ts=message.ts))
            await self.slack.send_socket_event(body, timeout=30)
            threads.append(message.ts)
        answered = await self._wait_answered(threads, timeout)
        report: dict[str, Any] = {
            "sent": count,
            "answered": answered,
            "most_replies_in_a_thread": max(
                (len(self.slack.bot_replies("C0001", ts)) for ts in threads), default=0
            ),
            "acked_by_connection": self.slack.acks_by_connection,
            "answered_from": answered_from(self.slack.calls),
        }
        return web.json_response(report)

    async def _wait_answered(self, threads: list[str], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            answered = sum(
                1
                for ts in threads
                if any(is_finished(m) for m in self.slack.bot_replies("C0001", ts))
            )
            if answered == len(threads) or time.monotonic() > deadline:
                return answered
            await asyncio.sleep(0.1)


async def serve(args: argparse.Namespace) -> None:
    slack = FakeSlack()
    slack.advertised_host = args.advertise
    slack.spread_socket_events = True
    slack.add_user("UALICE", display_name="Alice")
    openai = FakeOpenAI(run_s=args.model_s)
    await slack.start(host=args.host, port=args.slack_port)
    await openai.start(host=args.host, port=args.openai_port)
    control = Control(slack)
    app = web.Application()
    app.router.add_get("/status", control.status)
    app.router.add_post("/mentions", control.mentions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.control_port).start()
    print(
        f"fakes: Slack on {args.slack_port}, OpenAI on {args.openai_port}, "
        f"control on {args.control_port}",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await openai.stop()
        await slack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.serve", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--advertise", default="127.0.0.1", help="host name the bots use")
    parser.add_argument("--slack-port", type=int, default=8000)
    parser.add_argument("--openai-port", type=int, default=8001)
    parser.add_argument("--control-port", type=int, default=8002)
    parser.add_argument("--model-s", type=float, default=1.0, help="how long each answer takes")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
