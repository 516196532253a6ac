"""The access-token signing keys: ES256, in the keys dir, rotated, published as a JWKS (I6; C4).

Each key is a private JWK in `keys/oauth-signing/<created>-<kid>.json` (mode 0600, written
atomically by `crypto.keyfiles.write_private`). The newest key signs. When it is older than
`oauth_signing_key_rotation_days`, the next issuance creates a new one (and the caller audits
`oauth.signing_key.rotate`). A replaced key stays in the published JWKS until every token it
signed has expired (its successor's creation + the access-token lifetime + leeway), so rotation
never breaks a live token; after that it is no longer trusted for verification either.

Only public keys leave this module for the JWKS endpoint. The signature itself is joserfc's: no
hand-written crypto (house rule).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from joserfc.jwk import ECKey, KeySet

from bastionpay.config import Settings
from bastionpay.crypto.keyfiles import write_private

ALGORITHM: Final = "ES256"  # the one allow-listed algorithm (I6; RFC 9700 §2.2.1 via RFC 8725)
CURVE: Final = "P-256"
DIRECTORY: Final = "oauth-signing"
# Clock skew tolerated between this server and resource servers (also in verification).
LEEWAY_SECONDS: Final = 30


@dataclass(frozen=True)
class SigningKey:
    kid: str
    created: int
    key: ECKey


class SigningKeys:
    """The key ring of one keys dir; safe to share between threads of a process."""

    def __init__(self, directory: Path, *, rotation_seconds: int, token_seconds: int) -> None:
        self.directory = directory
        self.rotation_seconds = rotation_seconds
        self.token_seconds = token_seconds
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = []
        self._mtime_ns: int | None = None

    def _load(self) -> list[SigningKey]:
        # Reread only when the directory changed (another process rotated, or first use).
        try:
            mtime = self.directory.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        if mtime == self._mtime_ns:
            return self._keys
        keys: list[SigningKey] = []
        for path in sorted(self.directory.glob("*.json")):
            data = json.loads(path.read_text())
            key = ECKey.import_key(data)
            keys.append(SigningKey(kid=str(data["kid"]), created=int(data["iat"]), key=key))
        keys.sort(key=lambda k: (k.created, k.kid))
        self._keys, self._mtime_ns = keys, mtime
        return keys

    def _create(self, now: int) -> SigningKey:
        key = ECKey.generate_key(CURVE, {"alg": ALGORITHM, "use": "sig"}, private=True)
        key.ensure_kid()  # the RFC 7638 thumbprint: stable, not secret
        kid = str(key.kid)
        data: dict[str, Any] = {**key.as_dict(private=True), "iat": now}
        write_private(self.directory / f"{now:012d}-{kid}.json", json.dumps(data).encode())
        self._mtime_ns = None
        return SigningKey(kid=kid, created=now, key=key)

    def current(self, now: int) -> tuple[SigningKey, bool]:
        """The key to sign with at `now`, and whether it was just created (rotation to audit)."""
        with self._lock:
            keys = self._load()
            if keys and now < keys[-1].created + self.rotation_seconds:
                return keys[-1], False
            return self._create(now), True

    def published(self, now: int) -> list[SigningKey]:
        """Keys whose tokens may still be live at `now`: the newest, and each older one until its
        successor has been signing for longer than a token lives."""
        with self._lock:
            keys = self._load()
        live: list[SigningKey] = []
        for index, key in enumerate(keys):
            successor = keys[index + 1] if index + 1 < len(keys) else None
            if successor is None or now <= successor.created + self.token_seconds + LEEWAY_SECONDS:
                live.append(key)
        return live

    def verification_set(self, now: int) -> KeySet | None:
        keys = self.published(now)
        if not keys:
            return None
        return KeySet([ECKey.import_key(k.key.as_dict(private=False)) for k in keys])

    def jwks(self, now: int) -> dict[str, Any]:
        """The public JWKS (RFC 7517): never a private parameter."""
        return {"keys": [k.key.as_dict(private=False) for k in self.published(now)]}


_RINGS: dict[Path, SigningKeys] = {}
_RINGS_LOCK = threading.Lock()


def signing_keys(settings: Settings) -> SigningKeys:
    """The process-wide ring for `settings.keys_dir` (one per keys dir, so tests stay separate)."""
    directory = settings.keys_dir / DIRECTORY
    with _RINGS_LOCK:
        ring = _RINGS.get(directory)
        if ring is None:
            ring = SigningKeys(
                directory,
                rotation_seconds=settings.oauth_signing_key_rotation_days * 86400,
                token_seconds=settings.oauth_access_token_seconds,
            )
            _RINGS[directory] = ring
        return ring
