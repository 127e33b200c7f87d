"""The repositories, one per aggregate, built on one shared engine handle.

`Store` only composes them: call sites use the repository they need
(`store.inbox.record_message`, `store.leases.claim`, `store.turns.mark_done` ...).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.crypto import TokenCipher
from bot.store.database import Database
from bot.store.feedback import Feedbacks
from bot.store.history import History
from bot.store.inbox import Inbox
from bot.store.leases import Leases
from bot.store.retention import Retention
from bot.store.turns import Turns


class Store:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        cipher: TokenCipher | None = None,
        intake_engine: AsyncEngine | None = None,
    ) -> None:
        """`cipher` encrypts action tokens at rest; without one, a key of this process
        alone (what it stores only it can read). `intake_engine`, if given, is the inbox's
        own, so storing a message before Slack's ack never waits behind answer work."""
        database = Database(engine)
        self.engine = engine
        self.inbox = Inbox(database, cipher=cipher or TokenCipher.ephemeral(), engine=intake_engine)
        self.leases = Leases(database)
        self.turns = Turns(database)
        self.history = History(database)
        self.feedback = Feedbacks(database)
        self.retention = Retention(database)
