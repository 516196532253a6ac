"""The 3-D Secure authentication value (CAVV-like) that rides in DE 48.43 (issue 4, item 7).

The simulated network's format, shared by the vault (which plays the access control server and
makes the value) and the issuer (which checks it):

    base64( 0x01 | ECI as one byte | 18-byte MAC )       20 bytes → 28 characters

A real CAVV is also 20 bytes; its MAC is made with keys the issuer shares with its access control
server and is verified by the issuer. The simulator's issuer holds no such key (it is a separate
process with no secrets of the vault's), so it checks what it can without one: the value is
present, well-formed, of this format, and names the same ECI as DE 48.42 — a cryptogram copied
from another kind of authentication, truncated or made up by hand is refused. The vault makes the
MAC with HMAC-SHA-256 under its own key over the transaction (`vault.threeds`), never with a
home-made cipher.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

FORMAT_VERSION: Final = 0x01
LENGTH: Final = 20
MAC_LENGTH: Final = LENGTH - 2


def encode(eci: str, mac: bytes) -> str:
    """The DE 48.43 value for `eci` (two digits) and a MAC of at least 18 bytes (truncated)."""
    if len(eci) != 2 or not eci.isdigit():
        raise ValueError("eci must be two digits")
    if len(mac) < MAC_LENGTH:
        raise ValueError("the MAC is too short")
    raw = bytes((FORMAT_VERSION, int(eci))) + mac[:MAC_LENGTH]
    return base64.b64encode(raw).decode("ascii")


def well_formed(eci: str | None, cryptogram: str | None) -> bool:
    """True when `cryptogram` is a value of this format for `eci` (see the module docstring)."""
    if not eci or not cryptogram or len(eci) != 2 or not eci.isdigit():
        return False
    try:
        raw = base64.b64decode(cryptogram, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == LENGTH and raw[0] == FORMAT_VERSION and raw[1] == int(eci)
