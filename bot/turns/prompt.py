"""What the assistant is asked in a turn: the new messages with their speakers, the Slack
thread's earlier messages when the assistant has not seen them, and the attached files.

The wording (who said what, markup made readable) is pure and lives in `bot/text/`; this
module gathers what it needs from Slack and the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.attachments import (
    Image,
    parse_files,
    plan_files,
    quoted_text_file,
    refusal_note,
)
from bot.slack.gateway import SlackGateway
from bot.slack.threads import ASSISTANT_AUTHOR
from bot.store.repository import Store
from bot.text.slack_markup import mentioned_user_ids, slack_to_plain
from bot.text.turn_input import build_turn_input
from bot.turns.active import ActiveTurn

log = logging.getLogger(__name__)

History = list[tuple[str, str, bool]]
"""(author id, text, from the bot) of earlier thread messages, oldest first."""

PARTIAL_HISTORY_NOTE = (
    "(Slack let only part of this thread be read just now, so some earlier messages may be "
    "missing.)"
)


@dataclass(frozen=True)
class Prompt:
    text: str
    images: tuple[Image, ...] = ()
    note: str | None = None
    """For the user, once: the files that could not be read."""

    @property
    def empty(self) -> bool:
        """Nothing to ask (an empty mention)."""
        return not self.text.strip()


class PromptBuilder:
    def __init__(
        self,
        *,
        slack: SlackGateway,
        store: Store,
        backend_name: str,
        hidden_texts: frozenset[str],
    ) -> None:
        self._slack = slack
        self._store = store
        self._backend_name = backend_name
        self._hidden_texts = hidden_texts

    async def build(self, active: ActiveTurn) -> Prompt:
        """The text, quoted text files, and images; on the first attempt, a note naming
        the files that cannot be read."""
        turn, messages = active.turn, active.messages
        text = await self._turn_input(active)
        plan = plan_files([f for m in messages for f in parse_files(m.files)])
        fetched = await self._slack.download_files(
            plan, deadline_at=turn.deadline_at, team=active.place.team
        )
        images = fetched.images
        for name, data in fetched.texts:
            text = f"{text}\n\n{quoted_text_file(name, data)}".strip()
        plan.refused.extend(fetched.refused)
        note = refusal_note(plan.refused) if plan.refused and active.first_attempt else None
        if not text and images:
            text = "(The user sent the attached image without a question.)"
        return Prompt(text=text, images=tuple(images), note=note)

    async def _turn_input(self, active: ActiveTurn) -> str:
        conversation, messages = active.conversation, active.messages
        history, partial = await self._history_for(active)
        texts = [m.text for m in messages] + [text for _, text, _ in history]
        team = active.place.team
        names = await self._slack.display_names(
            [m.user_id for m in messages]
            + [author for author, _, from_bot in history if not from_bot]
            + [user_id for text in texts for user_id in mentioned_user_ids(text)],
            team=team,
        )
        bot = await self._slack.bot_user_for(team)
        new = [
            (
                names.get(m.user_id, m.user_id),
                slack_to_plain(m.text, user_names=names, bot_user_id=bot),
            )
            for m in messages
        ]
        new = [(author, text) for author, text in new if text]
        if not new:
            return ""
        earlier = [
            (
                ASSISTANT_AUTHOR if from_bot else names.get(author, author),
                slack_to_plain(text, user_names=names, bot_user_id=bot),
            )
            for author, text, from_bot in history
        ]
        text = build_turn_input(new, history=earlier, is_group=conversation.surface == "channel")
        if partial:
            text = f"{PARTIAL_HISTORY_NOTE}\n\n{text}"
        if conversation.context_channel_id:
            viewing = f"<#{conversation.context_channel_id}>"
            text = f"(The user is currently looking at the channel {viewing}.)\n\n{text}"
        return text

    async def _history_for(self, active: ActiveTurn) -> tuple[History, bool]:
        """Earlier messages of the thread the assistant has not seen, and whether some could
        not be read.

        Needed when the bot is first mentioned in the middle of a thread, or when the thread
        continues on a backend other than the one it started on. What the bot stored itself
        (the messages it was sent, the answers it gave) is used first; Slack is asked only
        for the part of the thread before the bot's first message there, since its thread
        reads are limited (one a minute, 15 messages, for apps outside the Marketplace).
        """
        conversation, messages = active.conversation, active.messages
        if not messages:
            return [], False
        ran_on = await self._backends_that_ran_before(active)
        if self._backend_name in ran_on:
            return [], False
        started_mid_thread = messages[0].ts != conversation.thread_ts
        switched_backend = bool(ran_on) or (
            conversation.remote_id is not None and conversation.backend != self._backend_name
        )
        if not (started_mid_thread or switched_backend):
            return [], False
        stored: History = []
        first_seen = messages[0].ts
        if switched_backend:
            rows = await self._store.history.stored_thread(
                conversation.id, before_ts=messages[0].ts
            )
            stored = [(author, text, from_bot) for _, author, text, from_bot in rows]
            if rows:
                first_seen = rows[0][0]
        if first_seen == conversation.thread_ts:
            return stored, False
        read = await self._slack.read_thread(
            conversation.channel_id,
            conversation.thread_ts,
            before_ts=first_seen,
            team=active.place.team,
        )
        earlier = [
            (message.author_id, message.text, message.from_bot)
            for message in read.messages
            if message.text not in self._hidden_texts and (switched_backend or not message.from_bot)
        ]
        return earlier + stored, read.incomplete

    async def _backends_that_ran_before(self, active: ActiveTurn) -> set[str]:
        """The backends earlier turns of this conversation ran on.

        On a first attempt the stored remote thread tells it without a query: it was made by
        an earlier turn. A retried turn may have made the remote thread itself just before a
        crash, before its first run, so only the turns' own records tell.
        """
        conversation = active.conversation
        if conversation.remote_id is None:
            return set()
        if active.first_attempt and conversation.backend is not None:
            return {conversation.backend}
        return await self._store.history.backends_before(conversation.id, turn_id=active.turn.id)
