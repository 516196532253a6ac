"""Secret values that never print (SECURITY-REQUIREMENTS L3: no secrets in logs or errors)."""

from __future__ import annotations

import hmac
from typing import Final

MASK: Final = "**********"


class Secret:
    """Wraps a secret string; `str()`/`repr()` show a mask, `.reveal()` shows the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        # Constant-time comparison: a secret's equality must not leak by timing.
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))
