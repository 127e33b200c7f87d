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
from tests.harness import RUN_STARTS, BotProcess, Conversations, bot_env

SUPPORT_INSTRUCTIONS = "You help customers. Be warm, and end with a link to status.example.com."


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
    slack.add_user("UADA", display_name="Ada", is_admin=True)
    slack.add_channel("C0002", name="support")
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
                # An admin gives #support its own instructions with /assistant.
                command = f"instructions {SUPPORT_INSTRUCTIONS}"
                _, ack = await talk.command(command, user="UADA", channel="C0002")
                support = await talk.mention("a customer can't log in", channel="C0002")
                await talk.wait_for_answers("C0002", support.ts)
            print(f"# #general (C0001), {backend} backend, {delivery} delivery\n")
            print(slack.render_thread("C0001", question.ts))
            print("\n# DM with the bot (D0001)\n")
            print(slack.render_thread("D0001", dm.ts))
            print("\n# #support (C0002): its own instructions\n")
            print(f"Ada: /assistant {command}")
            print(f"(only Ada sees) {ack.get('text')}")
            print(slack.render_thread("C0002", support.ts))
            last_run = openai.requests_to("POST", RUN_STARTS)[-1].body
            told = last_run.get("instructions") or last_run.get("additional_instructions")
            print(f"(the model was told: {told!r})")
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
