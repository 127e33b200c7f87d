"""At start: every stored secret encrypted with the first key of TOKEN_ENCRYPTION_KEYS.

Tokens stored before encryption (an upgrade) are encrypted; tokens encrypted with an older
key (a rotation) are encrypted again with the new first key. Each row is rewritten only if
it still holds what was read (compare and set), so a token another process refreshed
meanwhile is never overwritten with the old one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.crypto import TokenCipher, UnreadableSecret

log = logging.getLogger(__name__)

_INSTALLATION_COLUMNS = {
    "slack_bots": ("bot_token", "bot_refresh_token"),
    "slack_installations": ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token"),
}


@dataclass(frozen=True)
class Reencrypted:
    rewritten: int
    """Values encrypted (again) with the first key."""
    unreadable: int
    """Installation tokens none of the keys can read (a key is missing)."""
    dropped: int
    """Action tokens none of the keys can read: cleared (they live minutes anyway)."""


async def ensure_encrypted(engine: AsyncEngine, cipher: TokenCipher) -> None:
    """Start-up: encrypt what is not yet encrypted with the first key; `UnreadableSecret`
    (one line) when installation tokens are encrypted with a key that is not configured."""
    done = await reencrypt_stored_secrets(engine, cipher)
    if done.unreadable:
        raise UnreadableSecret(
            f"TOKEN_ENCRYPTION_KEYS cannot read {done.unreadable} stored tokens: keep the key "
            "they were encrypted with in the list, after the new one"
        )


async def reencrypt_stored_secrets(engine: AsyncEngine, cipher: TokenCipher) -> Reencrypted:
    rewritten = unreadable = dropped = 0
    async with engine.begin() as connection:
        for table_name, columns in _INSTALLATION_COLUMNS.items():
            for column in columns:
                done, failed = await _reencrypt_column(connection, cipher, table_name, column)
                rewritten += done
                unreadable += failed
        done, failed = await _reencrypt_column(
            connection, cipher, "inbox_messages", "action_token", drop_unreadable=True
        )
        rewritten += done
        dropped += failed
    if rewritten:
        log.info("encrypted %s stored tokens with the first key of the key list", rewritten)
    if dropped:
        log.warning("cleared %s action tokens that no configured key can read", dropped)
    return Reencrypted(rewritten=rewritten, unreadable=unreadable, dropped=dropped)


async def _reencrypt_column(
    connection: AsyncConnection,
    cipher: TokenCipher,
    table_name: str,
    column: str,
    *,
    drop_unreadable: bool = False,
) -> tuple[int, int]:
    table = sa.table(table_name, sa.column("id"), sa.column(column, sa.Text))
    c = table.c
    rows = (
        await connection.execute(sa.select(c.id, c[column]).where(c[column].is_not(None)))
    ).all()
    rewritten = failed = 0
    for row_id, stored in rows:
        if cipher.is_current(str(stored)):
            continue
        try:
            value: str | None = cipher.reencrypt(str(stored))
        except UnreadableSecret:
            failed += 1
            if not drop_unreadable:
                continue
            value = None
        await connection.execute(
            sa.update(table).where(c.id == row_id, c[column] == stored).values({column: value})
        )
        rewritten += value is not None
    return rewritten, failed
