"""Secret key files: created once with the OS CSPRNG, mode 0600, never logged."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_BYTES = 32  # 256-bit keys (ASVS 11.2.3: ≥ 128-bit strength).


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner only, atomically (no half-written key file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


def load_or_create_key(path: Path) -> bytes:
    if path.exists():
        data = path.read_bytes()
        if len(data) != KEY_BYTES:
            raise ValueError(f"key file {path} is corrupt (expected {KEY_BYTES} bytes)")
        return data
    key = secrets.token_bytes(KEY_BYTES)
    write_private(path, key)
    return key
