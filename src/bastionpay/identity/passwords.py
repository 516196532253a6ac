"""Password hashing and the password policy (SECURITY-REQUIREMENTS I1, I2; docs/identity.md).

Hashing is argon2id through argon2-cffi, with the parameters from Settings: by default RFC 9106
section 4's second recommended option (t=3, p=4, m=64 MiB); Settings refuses less than 46 MiB (I1).
A stored hash records its own parameters, so raising them in Settings upgrades each hash at that
user's next successful login (`needs_rehash`) without a migration.

The policy (I1, PCI DSS 8.3.6–8.3.7, NIST SP 800-63B 3.1.1.2): at least `password_min_length`
(≥ 12) characters with letters and digits, not the email's local part nor containing it, not one of
the current and last 4 passwords, not in the shipped list of common passwords (also with digits or
punctuation merely added before or after a common one). Errors say which rule failed, never the
password.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import unicodedata
from functools import lru_cache
from importlib import resources
from typing import Final

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import ARGON2_VERSION

from bastionpay.config import Settings
from bastionpay.kernel.errors import AuthenticationError, InvalidRequestError

# An upper bound keeps one login attempt's cost bounded (argon2 pre-hashes its input, but a
# megabyte password is still work and memory for nothing); 256 is well above NIST's "at least 64".
MAX_PASSWORD_LENGTH: Final = 256
HISTORY_DEPTH: Final = 4  # I1 / PCI DSS 8.3.7: not one of the last 4 (plus the current one)
# An email local part shorter than this is too short to look for inside a password ("a@x.io").
_MIN_LOCAL_PART_TO_SEARCH: Final = 3
_STRIP_AROUND: Final = "0123456789!@#$%^&*()_+-=.,;:?/\\|'\"`~[]{}<> "
_SALT_BYTES: Final = 16  # RFC 9106 section 3.1: 128-bit salts
_HASH_BYTES: Final = 32  # RFC 9106 section 4: 256-bit tags
LOGIN_FAILED_MESSAGE: Final = "Incorrect email or password."


class InvalidCredentials(AuthenticationError):
    """One error for every failed password check: unknown account, wrong password, disabled or
    locked account alike (I2; ASVS 6.3.8 — the answer must not reveal whether an account exists)."""

    def __init__(self) -> None:
        super().__init__(LOGIN_FAILED_MESSAGE, code="invalid_login")


def _prepare(password: str) -> str:
    # NIST SP 800-63B 5.1.1.2: normalise Unicode (NFKC) so the same typed password always hashes
    # the same, whatever the keyboard or platform composed.
    return unicodedata.normalize("NFKC", password)


class Passwords:
    """argon2id hashing with the configured parameters. Thread-safe; CPU-bound: call it from a
    worker thread, never from the event loop (issue 5, item 2)."""

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            hash_len=_HASH_BYTES,
            salt_len=_SALT_BYTES,
            type=Type.ID,
        )
        self._time_cost = settings.argon2_time_cost
        self._memory_kib = settings.argon2_memory_kib
        # Settings refuses less than 12 (I1); the policy reads it from here so no caller forgets.
        self.min_length = settings.password_min_length
        self._decoy: str | None = None
        self._decoy_lock = threading.Lock()

    def hash(self, password: str) -> str:
        return self._hasher.hash(_prepare(password))

    def verify(self, stored_hash: str, password: str) -> None:
        """Raise InvalidCredentials unless `password` matches `stored_hash`."""
        if len(password) > MAX_PASSWORD_LENGTH:
            # No stored password can be this long (the policy caps it); spend the same time anyway.
            self.burn(password[:MAX_PASSWORD_LENGTH])
            raise InvalidCredentials
        try:
            self._hasher.verify(stored_hash, _prepare(password))
        except (VerificationError, InvalidHashError):
            # A mismatch and a corrupt stored hash fail the same way (fail closed, P3).
            raise InvalidCredentials from None

    def matches(self, stored_hash: str, password: str) -> bool:
        """For the reuse check only; authentication uses `verify`, which raises."""
        try:
            self.verify(stored_hash, password)
        except InvalidCredentials:
            return False
        return True

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when `stored_hash` is weaker than the configured parameters (or not argon2id).

        Only weaker, not merely different: during a rolling change two processes with different
        settings would otherwise rewrite each other's hashes back and forth at every login.
        """
        try:
            stored = extract_parameters(stored_hash)
        except InvalidHashError:
            return True
        return (
            stored.type is not Type.ID
            or stored.version < ARGON2_VERSION
            or stored.time_cost < self._time_cost
            or stored.memory_cost < self._memory_kib
            or stored.salt_len < _SALT_BYTES
            or stored.hash_len < _HASH_BYTES
        )

    def burn(self, password: str) -> None:
        """Cost what `verify` costs, for accounts that do not exist (I2; ASVS 6.3.8): a decoy hash
        with the current parameters, made once, is verified and the result thrown away."""
        with contextlib.suppress(VerificationError):
            self._hasher.verify(self._decoy_hash(), _prepare(password[:MAX_PASSWORD_LENGTH]))

    def _decoy_hash(self) -> str:
        with self._decoy_lock:
            if self._decoy is None:
                self._decoy = self._hasher.hash(secrets.token_urlsafe(32))
            return self._decoy


_SHARED: dict[tuple[int, int, int, int], Passwords] = {}
_SHARED_LOCK = threading.Lock()


def passwords_for(settings: Settings) -> Passwords:
    """One `Passwords` per parameter set, shared by the process: its decoy hash is made once."""
    key = (
        settings.argon2_time_cost,
        settings.argon2_memory_kib,
        settings.argon2_parallelism,
        settings.password_min_length,
    )
    with _SHARED_LOCK:
        shared = _SHARED.get(key)
        if shared is None:
            shared = _SHARED[key] = Passwords(settings)
        return shared


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list (identity/data/common-passwords.txt, from zxcvbn, MIT), lower-cased."""
    text = resources.files("bastionpay.identity").joinpath("data/common-passwords.txt").read_text()
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _too_weak(message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param="password", code="password_too_weak")


def _is_common(password: str) -> bool:
    common = common_passwords()
    lowered = password.lower()
    # "dragon123456" or "!!password2024" is a common password with decoration: the first thing
    # a guessing attack tries after the list itself.
    return lowered in common or lowered.strip(_STRIP_AROUND) in common


def check_policy(
    passwords: Passwords,
    password: str,
    *,
    email: str,
    current_hash: str | None,
    history: list[str],
    min_length: int,
) -> None:
    """Raise InvalidRequestError(param="password", code="password_too_weak"|"password_reused").

    Cheap rules first; the reuse check costs one argon2 verification per remembered hash (up to 5).
    """
    candidate = _prepare(password)
    if len(candidate) < min_length:
        raise _too_weak(f"Passwords must be at least {min_length} characters long.")
    if len(candidate) > MAX_PASSWORD_LENGTH:
        raise _too_weak(f"Passwords must be at most {MAX_PASSWORD_LENGTH} characters long.")
    if not any(c.isalpha() for c in candidate) or not any(c.isdigit() for c in candidate):
        raise _too_weak("Passwords must contain both letters and digits.")
    lowered = candidate.lower()
    local = email.strip().lower().partition("@")[0]
    if (
        lowered == email.strip().lower()
        or lowered == local
        or (len(local) >= _MIN_LOCAL_PART_TO_SEARCH and local in lowered)
    ):
        raise _too_weak("Passwords must not contain your email address or its name part.")
    if _is_common(candidate):
        raise _too_weak("This password is too common; choose another.")
    remembered = ([current_hash] if current_hash else []) + history[:HISTORY_DEPTH]
    if any(passwords.matches(stored, candidate) for stored in remembered):
        raise InvalidRequestError(
            "Choose a password you have not used recently (not one of your last "
            f"{HISTORY_DEPTH + 1}).",
            param="password",
            code="password_reused",
        )
