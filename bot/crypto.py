"""Secrets at rest: workspace bot and refresh tokens, and Slack's action tokens, are stored
encrypted with Fernet (AES-128-CBC with HMAC-SHA256), never as they were given.

The keys come from `TOKEN_ENCRYPTION_KEYS` (comma-separated Fernet keys): the first encrypts,
every one decrypts, so a key is rotated by putting a new one first and keeping the old one
after it until `python -m bot` has started once (start-up re-encrypts every stored token with
the first key; see `bot/store/secrets_at_rest.py`). In single-token mode, without the
setting, the key is derived from SLACK_BOT_TOKEN (the only secret stored then is an action
token, which lives minutes).

Values stored before encryption (an upgrade) are read as they are and re-encrypted at start.

`cryptography` (7 MiB once imported) is imported on the first secret encrypted or decrypted,
or when TOKEN_ENCRYPTION_KEYS is set: a single-token bot answering mentions stores no secret.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

FERNET_PREFIX = "gAAAAA"
"""How every Fernet token starts (version byte 0x80 and a timestamp's zero high bytes); no
Slack token does."""
KEYGEN_HINT = (
    'generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)
TOKEN_COLUMNS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")
"""The columns of slack_sdk's installation tables that hold secrets."""


class UnreadableSecret(Exception):
    """A stored value is encrypted, but with none of the configured keys."""


def parse_keys(raw: str) -> tuple[str, ...]:
    """The keys of TOKEN_ENCRYPTION_KEYS, checked; `ValueError` with one line if one is not
    a Fernet key."""
    keys = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not keys:
        return keys
    from cryptography.fernet import Fernet

    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ValueError(
                f"TOKEN_ENCRYPTION_KEYS: key {number} is not a Fernet key (32 url-safe "
                f"base64-encoded bytes); {KEYGEN_HINT}"
            ) from None
    return keys


def derived_key(secret: str) -> str:
    """A Fernet key derived from another secret the bot is given (HKDF-SHA256)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"slack-assistant-bot tokens"
    ).derive(secret.encode())
    return base64.urlsafe_b64encode(raw).decode()


def token_cipher(keys: Sequence[str], *, bot_token: str) -> TokenCipher:
    """The configured keys; without any (single-token mode only), one derived from the bot
    token (when first needed)."""
    if keys:
        return TokenCipher(keys)
    return TokenCipher(lambda: [derived_key(bot_token)])


class TokenCipher:
    """Encrypts with the first key, decrypts with any. The keys (or what makes them) are
    turned into ciphers on first use."""

    def __init__(self, keys: Sequence[str] | Callable[[], Sequence[str]]) -> None:
        if not callable(keys) and not keys:
            raise ValueError("at least one key is needed")
        self._keys = keys
        self._ciphers: tuple[Fernet, MultiFernet] | None = None

    @classmethod
    def ephemeral(cls) -> TokenCipher:
        """A key of this process alone: what it stores, only it can read."""
        return cls([base64.urlsafe_b64encode(os.urandom(32)).decode()])  # Fernet.generate_key

    @property
    def _current(self) -> Fernet:
        return self._built()[0]

    @property
    def _all(self) -> MultiFernet:
        return self._built()[1]

    def _built(self) -> tuple[Fernet, MultiFernet]:
        if self._ciphers is None:
            from cryptography.fernet import Fernet, MultiFernet

            keys = self._keys() if callable(self._keys) else self._keys
            self._ciphers = (Fernet(keys[0]), MultiFernet([Fernet(key) for key in keys]))
        return self._ciphers

    def encrypt(self, plain: str) -> str:
        return self._current.encrypt(plain.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """The plain value: decrypted, or as stored when it was stored before encryption;
        `UnreadableSecret` when it is encrypted with a key that is not configured."""
        from cryptography.fernet import InvalidToken

        if not is_encrypted(stored):
            return stored
        try:
            return self._all.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise UnreadableSecret("encrypted with a key not in TOKEN_ENCRYPTION_KEYS") from None

    def is_current(self, stored: str) -> bool:
        """Whether `stored` is encrypted with the first key (nothing to re-encrypt)."""
        from cryptography.fernet import InvalidToken

        if not is_encrypted(stored):
            return False
        try:
            self._current.decrypt(stored.encode())
        except InvalidToken:
            return False
        return True

    def reencrypt(self, stored: str) -> str:
        """`stored` encrypted with the first key (plain values are encrypted)."""
        return self.encrypt(self.decrypt(stored))


def is_encrypted(stored: str) -> bool:
    return stored.startswith(FERNET_PREFIX)


class EncryptedText(sa.types.TypeDecorator[str]):
    """A text column whose values are encrypted on the way in and decrypted on the way
    out, whatever statement (slack_sdk's store or the bot's own) reads or writes it.
    Encryption is randomised: never compare such a column with a value in SQL."""

    impl = sa.Text
    cache_ok = False

    def __init__(self, cipher: TokenCipher) -> None:
        super().__init__()
        self._cipher = cipher

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else self._cipher.encrypt(str(value))

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else self._cipher.decrypt(str(value))


def with_encrypted_tokens(table: sa.Table, cipher: TokenCipher) -> sa.Table:
    """A copy of one of slack_sdk's installation tables whose token columns encrypt."""
    columns = []
    for column in table.columns:
        copied = column._copy()
        if column.name in TOKEN_COLUMNS:
            copied.type = EncryptedText(cipher)
        columns.append(copied)
    return sa.Table(table.name, sa.MetaData(), *columns)
