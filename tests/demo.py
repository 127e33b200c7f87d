"""See the bot work without Slack or OpenAI accounts: `python -m tests.demo`.

Starts the fake Slack and fake OpenAI servers, runs the real bot (`python -m bot`, HTTP mode)
against them, plays a short conversation with signed events, and prints each Slack thread as a
user would see it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile

import aiohttp

from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import BotProcess, Conversations, bot_env


def scripted_model(user_texts: list[str]) -> str:
    last = user_texts[-1].split(": ", 1)[-1]
    if "deploy" in last:
        steps = "1. Merge to `main`\n2. Wait for CI\n3. Run `make release`"
        return f"**Deploying** takes three steps:\n\n{steps}"
    if "rollback" in last.lower():
        return "Run `make rollback` — it restores the previous release in about a minute."
    return f"You asked: _{last}_ — here is a short answer."


async def demo(backend: str, delivery: str) -> None:
    slack, openai = FakeSlack(), FakeOpenAI(run_s=0.6)
    await slack.start()
    await openai.start()
    slack.add_user("UALICE", display_name="Alice")
    slack.add_user("UBOB", display_name="Bob")
    openai.reply = scripted_model
    with tempfile.TemporaryDirectory() as workdir:
        env = bot_env(
            slack=slack,
            openai=openai,
            database_url=f"sqlite:///{workdir}/demo.db",
            assistant_api=backend,
            DELIVERY=delivery,
        )
        bot = BotProcess(env)
        bot.start()
        try:
            await bot.wait_ready()
            async with aiohttp.ClientSession() as http:
                talk = Conversations(bot.events_url, slack, openai, http)
                question = await talk.mention("how do we deploy?")
                await talk.wait_for_answers("C0001", question.ts)
                await talk.reply("and if it breaks?  rollback?", thread_ts=question.ts, user="UBOB")
                await talk.wait_for_answers("C0001", question.ts, count=2)
                dm = await talk.dm("what's on my plate today?")
                await talk.wait_for_answers("D0001", dm.ts)
            print(f"# #general (C0001), {backend} backend, {delivery} delivery\n")
            print(slack.render_thread("C0001", question.ts))
            print("\n# DM with the bot (D0001)\n")
            print(slack.render_thread("D0001", dm.ts))
        finally:
            bot.stop()
            await slack.stop()
            await openai.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["responses", "threads"], default="responses")
    parser.add_argument("--delivery", choices=["poll", "stream"], default="stream")
    args = parser.parse_args()
    asyncio.run(demo(args.backend, args.delivery))


if __name__ == "__main__":
    main()
