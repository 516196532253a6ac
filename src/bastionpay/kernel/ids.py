"""Object ids: a type prefix and 24 random base62 characters (ARCHITECTURE: Conventions).

24 base62 characters carry ~142 bits from the OS CSPRNG (`secrets`), so ids are unguessable and
never leak creation order or volume to other merchants.
"""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.digits + string.ascii_letters
ID_RANDOM_LENGTH = 24


# Bytes 0..247 map to base62 digits (248 = 4 × 62, so each digit has exactly 4 preimages);
# bytes 248..255 are dropped (rejection sampling: no modulo bias).
_ACCEPTED = 248
_TO_DIGIT = bytes((_ALPHABET * 4).encode("ascii")) + bytes(256 - _ACCEPTED)
_REJECTED = bytes(range(_ACCEPTED, 256))


def random_base62(length: int) -> str:
    """`length` uniformly random base62 characters from the OS CSPRNG (`secrets`).

    Each CSPRNG byte below 248 becomes one digit (`bytes.translate`, no per-character Python
    loop: ids are made several times per payment); the rest are rejected, so every digit is
    uniform. ~3 % of bytes are rejected; drawing 25 % extra almost always needs one draw.
    """
    out = b""
    while len(out) < length:
        draw = secrets.token_bytes(length + length // 4 + 4)
        out += draw.translate(_TO_DIGIT, _REJECTED)
    return out[:length].decode("ascii")


def new_id(prefix: str) -> str:
    """`new_id("pi")` → `pi_3fA…` (prefix, underscore, 24 base62 characters)."""
    return f"{prefix}_{random_base62(ID_RANDOM_LENGTH)}"
