"""Object ids: a type prefix and 24 random base62 characters (ARCHITECTURE: Conventions).

24 base62 characters carry ~142 bits from the OS CSPRNG (`secrets`), so ids are unguessable and
never leak creation order or volume to other merchants.
"""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.digits + string.ascii_letters
ID_RANDOM_LENGTH = 24


def random_base62(length: int) -> str:
    """`length` uniformly random base62 characters from one CSPRNG draw (no modulo bias)."""
    value = secrets.randbelow(62**length)
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 62)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def new_id(prefix: str) -> str:
    """`new_id("pi")` → `pi_3fA…` (prefix, underscore, 24 base62 characters)."""
    return f"{prefix}_{random_base62(ID_RANDOM_LENGTH)}"
