"""What an HTTP endpoint of the bot answers a request it turns away or skips: a status and a
reason, as an enum member whose value is `(status, reason)`."""

from __future__ import annotations

import enum


class HttpOutcome(enum.Enum):
    """Subclass with members such as `TOO_LARGE = (413, "request too large")`."""

    @property
    def status(self) -> int:
        return int(self.value[0])

    @property
    def reason(self) -> str:
        return str(self.value[1])
