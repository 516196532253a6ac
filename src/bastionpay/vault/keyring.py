"""The data-key hierarchy: per-merchant DEKs under a KEK, sealing, rotation, status (C3, C4).

    KEK (FileKek | Pkcs11Kek, versioned)
      └─ wraps ─> DEK (per merchant, versioned, stored wrapped in the KeyStore)
                    └─ seals ─> records (card number, CVC) in the RecordStore, AES-256-GCM

Storage is behind the `KeyStore` and `RecordStore` protocols (`interfaces.py`); this module never
commits anything and holds no state but a cache of unwrapped DEKs.

Rotation (PCI DSS 3.6.4 cryptoperiods, 3.7.4 key changes; C4 "a retired key version protects
nothing after rotation completes"):

- KEK: `rotate_kek()` makes a new KEK version active; `rewrap()` rewraps every live DEK under it in
  batches (compare-and-set per row); `retire_kek(v)` destroys version v and refuses while any live
  DEK is still wrapped under v. The DEKs themselves, and so the records, do not change.
- DEK: `rotate_dek(merchant)` makes a new DEK version active, so new records use it at once;
  `reencrypt(merchant)` moves existing records to the active version in batches; `destroy_dek()`
  (or `destroy_drained()`) destroys an old version and refuses while any record is still sealed
  under it. A destroyed version keeps a tombstone row without key material.
- Both refusals also wait out `supersede_grace_seconds` after the successor version appeared: a
  writer that read the old active version just before the rotation may still be about to commit a
  row under it, and the count alone would miss that row.

Nonce budget (C4, ASVS 11.3.4): each DEK version's encryptions are counted in the KeyStore; a
process reserves them in blocks (`lease_block`) with one atomic increment, so the count holds
across restarts and processes (an unused reservation is simply lost, which errs on the safe side).
A version is due for rotation after `rotate_after` encryptions — with `auto_rotate` (the default)
the next `seal` rotates it — and refuses to encrypt after `encryption_limit`
(see `crypto/envelope.py` for the bounds).

Zeroising: DEKs are `bytearray`s that `destroy_dek` and `close` overwrite; see `DataKey` for what
Python can and cannot promise about copies.
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Final

from bastionpay.crypto.envelope import (
    ENCRYPTION_LIMIT,
    ROTATE_AFTER,
    Binding,
    DataKey,
    DecryptionFailed,
    EnvelopeError,
    NonceBudgetExhausted,
    dek_version_of,
    generate_key_material,
)
from bastionpay.crypto.kek import KeyEncryptionKey, RetirementRefused, UnknownKekVersion
from bastionpay.kernel.clock import Clock
from bastionpay.vault.cards import CardNumber, SecurityCode
from bastionpay.vault.interfaces import (
    DekConflict,
    DekRow,
    KeyStore,
    Purpose,
    RecordStore,
    Reencrypted,
    SealedRecord,
)

LEASE_BLOCK: Final = 1024
DEFAULT_BATCH: Final = 500
MAX_BATCH: Final = 10_000
MAX_CACHED_KEYS: Final = 10_000
DEFAULT_GRACE_SECONDS: Final = 300
_DEK_CONTEXT: Final = b"bastionpay/dek/v1"


class KeyringError(Exception):
    """Base class; messages name merchants, versions and counts, never key material."""


class KeyInUse(KeyringError):
    """Retiring or destroying a key version that still protects something is refused (C4)."""


class GracePeriod(KeyringError):
    """The version was superseded too recently to be destroyed safely; try again later."""


class NoDataKey(KeyringError):
    """The merchant has no usable data key version for this operation."""


class RecordUnreadable(KeyringError):
    """A stored record failed authentication: tampering or corruption; investigate (C5)."""


@dataclass(frozen=True, slots=True)
class KekVersionStatus:
    version: int
    created_at: int
    age_seconds: int
    active: bool
    non_extractable: bool
    protects_data_keys: int
    # Records sealed under the data keys this version wraps (among the merchants in the status).
    protects_records: int


@dataclass(frozen=True, slots=True)
class DekVersionStatus:
    merchant_id: str
    version: int
    created_at: int
    age_seconds: int
    active: bool
    kek_version: int | None
    protects_records: int
    encryptions: int
    rotation_due: bool
    destroyed_at: int | None


@dataclass(frozen=True, slots=True)
class KeyringStatus:
    kek_backend: str
    kek_key_id: str
    kek_active_version: int
    kek_versions: tuple[KekVersionStatus, ...]
    # KEK versions that live DEKs name but the KEK no longer has: those DEKs are unreadable. Always
    # empty unless a version was destroyed outside `retire_kek`; anything here is an incident.
    missing_kek_versions: tuple[int, ...]
    data_keys: tuple[DekVersionStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RewrapResult:
    kek_version: int
    rewrapped: int
    remaining: int  # live DEKs still under other KEK versions (0 when the rewrap is complete)


@dataclass(frozen=True, slots=True)
class ReencryptResult:
    merchant_id: str
    active_version: int
    moved: int
    remaining: dict[int, int]  # old DEK version -> records still sealed under it


class _StoreLease:
    """An `EncryptionCounter` backed by the KeyStore: reserves encryptions `block` at a time."""

    __slots__ = ("_block", "_keys", "_left", "_limit", "_lock", "_merchant_id", "_version")

    def __init__(
        self, keys: KeyStore, merchant_id: str, version: int, *, block: int, limit: int
    ) -> None:
        self._keys = keys
        self._merchant_id = merchant_id
        self._version = version
        self._block = block
        self._limit = limit
        self._left = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self._left == 0:
                total = self._keys.reserve_encryptions(
                    self._merchant_id, self._version, self._block
                )
                # This reservation covers encryptions total-block+1 .. total; only those up to the
                # limit may be used.
                usable = min(self._block, self._limit - (total - self._block))
                if usable <= 0:
                    raise NonceBudgetExhausted("data key encryption limit reached; rotate the key")
                self._left = usable
            self._left -= 1


def dek_context(merchant_id: str, version: int) -> bytes:
    """What a wrapped DEK is bound to: a wrapped key moved to another merchant or version fails."""
    raw = merchant_id.encode("utf-8")
    if not raw or len(raw) > 255:
        raise ValueError("merchant id must be 1-255 bytes")
    return _DEK_CONTEXT + struct.pack(">B", len(raw)) + raw + struct.pack(">I", version)


def _zero(buffer: bytearray) -> None:
    for index in range(len(buffer)):
        buffer[index] = 0


class Keyring:
    def __init__(
        self,
        kek: KeyEncryptionKey,
        keys: KeyStore,
        records: RecordStore,
        *,
        clock: Clock,
        auto_rotate: bool = True,
        supersede_grace_seconds: int = DEFAULT_GRACE_SECONDS,
        lease_block: int = LEASE_BLOCK,
        rotate_after: int = ROTATE_AFTER,
        encryption_limit: int = ENCRYPTION_LIMIT,
        max_cached_keys: int = MAX_CACHED_KEYS,
    ) -> None:
        if not 1 <= rotate_after <= encryption_limit <= ENCRYPTION_LIMIT:
            raise ValueError("need 1 <= rotate_after <= encryption_limit <= ENCRYPTION_LIMIT")
        if lease_block < 1 or supersede_grace_seconds < 0 or max_cached_keys < 1:
            raise ValueError("lease_block and max_cached_keys >= 1, grace >= 0")
        self._kek = kek
        self._keys = keys
        self._records = records
        self._clock = clock
        self._auto_rotate = auto_rotate
        self._grace = supersede_grace_seconds
        self._lease_block = lease_block
        self._rotate_after = rotate_after
        self._limit = encryption_limit
        self._max_cached = max_cached_keys
        self._cache: OrderedDict[tuple[str, int], DataKey] = OrderedDict()
        self._lock = threading.Lock()

    # --- sealing -------------------------------------------------------------------------------

    def seal(
        self, merchant_id: str, record_id: str, purpose: Purpose, plaintext: bytes
    ) -> SealedRecord:
        """Encrypt a record under the merchant's active DEK (creating version 1 if it has none)."""
        row = self._active_row(merchant_id)
        key = self._data_key(row)
        binding = Binding(merchant_id, record_id, purpose.value)
        try:
            ciphertext = key.encrypt(plaintext, binding)
        except NonceBudgetExhausted:
            if not self._auto_rotate:
                raise
            # Another process used up the budget between our read and our reservation.
            key = self._data_key(self._rotated(merchant_id, row.version))
            ciphertext = key.encrypt(plaintext, binding)
        return SealedRecord(merchant_id, record_id, purpose, key.version, ciphertext)

    def seal_pan(self, merchant_id: str, record_id: str, number: CardNumber) -> SealedRecord:
        return self.seal(merchant_id, record_id, Purpose.PAN, number.reveal().encode("ascii"))

    def seal_cvc(self, merchant_id: str, record_id: str, cvc: SecurityCode) -> SealedRecord:
        """Seal a CVC; the caller deletes the record at authorization or TTL (C1, PCI 3.3.2)."""
        return self.seal(merchant_id, record_id, Purpose.CVC, cvc.reveal().encode("ascii"))

    def open_pan(self, record: SealedRecord) -> CardNumber:
        if record.purpose is not Purpose.PAN:
            raise RecordUnreadable(self._describe(record))
        digits = self.open(record).decode("ascii")
        # Stored numbers passed validation at entry; parsing again restores the brand.
        return CardNumber.parse(digits, allow_unknown_brand=True)

    def open_cvc(self, record: SealedRecord) -> SecurityCode:
        if record.purpose is not Purpose.CVC:
            raise RecordUnreadable(self._describe(record))
        return SecurityCode(self.open(record).decode("ascii"))

    def open(self, record: SealedRecord) -> bytes:
        """Decrypt a record; raises `RecordUnreadable` if it fails authentication."""
        try:
            version = dek_version_of(record.ciphertext)
        except EnvelopeError as exc:
            # Any envelope failure (a changed format tag included) is an unreadable record, which
            # callers audit as an incident (C5); security review L2.
            raise RecordUnreadable(self._describe(record)) from exc
        if version != record.dek_version:
            raise RecordUnreadable(self._describe(record))
        # The row is read on every open, cache or not, so a version destroyed by another process
        # is never used again here either.
        row = self._keys.get_dek(record.merchant_id, version)
        if row is None or not row.live:
            self._forget((record.merchant_id, version))
            raise NoDataKey(f"data key v{version} of {record.merchant_id} does not exist any more")
        binding = Binding(record.merchant_id, record.record_id, record.purpose.value)
        try:
            return self._data_key(row).decrypt(record.ciphertext, binding)
        except EnvelopeError:  # a failed tag, or a key destroyed by another process meanwhile
            raise RecordUnreadable(self._describe(record)) from None

    # --- data keys -----------------------------------------------------------------------------

    def rotate_dek(self, merchant_id: str) -> int:
        """Start a new DEK version for the merchant; new records use it from now on."""
        latest = self._keys.latest_dek(merchant_id)
        return self._create_dek(merchant_id, 1 if latest is None else latest.version + 1)

    def reencrypt(
        self, merchant_id: str, *, batch_size: int = DEFAULT_BATCH, max_batches: int | None = None
    ) -> ReencryptResult:
        """Move records sealed under older DEK versions to the active one, batch by batch."""
        _check_batch(batch_size)
        active = self._keys.latest_dek(merchant_id)
        if active is None or not active.live:
            raise NoDataKey(f"{merchant_id} has no active data key")
        new_key = self._data_key(active)
        moved = batches = 0
        for version in self._old_versions_with_records(merchant_id, active.version):
            row = self._keys.get_dek(merchant_id, version)
            if row is None or not row.live:
                continue  # records under a destroyed key are unreadable; status reports them
            old_key = self._data_key(row)
            while max_batches is None or batches < max_batches:
                batch = self._records.records_under(merchant_id, version, limit=batch_size)
                if not batch:
                    break
                updates = [self._reencrypted(record, old_key, new_key) for record in batch]
                applied = self._records.replace_batch(updates)
                moved += applied
                batches += 1
                if applied == 0:
                    break  # every record changed under us; leave them to the next run
        remaining = {
            version: count
            for (_, version), count in self._records.count_by_dek_version(merchant_id).items()
            if version != active.version and count
        }
        return ReencryptResult(merchant_id, active.version, moved, remaining)

    def destroy_dek(self, merchant_id: str, version: int) -> None:
        """Destroy an old DEK version that protects no record (C4, PCI DSS 3.7.5)."""
        rows = self._keys.list_deks(merchant_id)
        row = next((entry for entry in rows if entry.version == version), None)
        if row is None:
            raise NoDataKey(f"{merchant_id} has no data key v{version}")
        if not row.live:
            return  # already destroyed
        if version == rows[-1].version:
            raise KeyInUse(f"data key v{version} is the active key of {merchant_id}")
        count = self._records.count_by_dek_version(merchant_id).get((merchant_id, version), 0)
        if count:
            raise KeyInUse(
                f"data key v{version} of {merchant_id} still protects {count} records; "
                "re-encrypt them first"
            )
        successor = min(entry.created_at for entry in rows if entry.version > version)
        self._check_grace(successor, f"data key v{version} of {merchant_id}")
        self._keys.mark_destroyed(merchant_id, version, at=self._clock.now())
        self._forget((merchant_id, version))

    def destroy_drained(self, merchant_id: str) -> tuple[int, ...]:
        """Destroy each old DEK version that protects no record and is past its grace period."""
        destroyed: list[int] = []
        for row in self._keys.list_deks(merchant_id)[:-1]:
            if not row.live:
                continue
            try:
                self.destroy_dek(merchant_id, row.version)
            except (KeyInUse, GracePeriod):
                continue
            destroyed.append(row.version)
        return tuple(destroyed)

    # --- the KEK -------------------------------------------------------------------------------

    def rotate_kek(self) -> int:
        """Create a new KEK version; DEKs move to it with `rewrap()`."""
        return self._kek.rotate()

    def rewrap(
        self, *, batch_size: int = DEFAULT_BATCH, max_batches: int | None = None
    ) -> RewrapResult:
        """Rewrap live DEKs wrapped under older KEK versions with the active one."""
        _check_batch(batch_size)
        rewrapped = batches = 0
        while max_batches is None or batches < max_batches:
            active = self._kek.active_version
            rows = self._keys.deks_not_under(active, limit=batch_size)
            if not rows:
                break
            applied = 0
            for row in rows:
                if row.wrapped is None:
                    continue
                context = dek_context(row.merchant_id, row.version)
                material = self._kek.unwrap(row.wrapped, context=context)
                try:
                    new = self._kek.wrap(material, context=context)
                finally:
                    _zero(material)
                if self._keys.replace_wrapped(
                    row.merchant_id, row.version, old=row.wrapped, new=new
                ):
                    applied += 1
            rewrapped += applied
            batches += 1
            if applied == 0:
                break  # another process is rewrapping the same rows; let it finish
        active = self._kek.active_version
        remaining = sum(
            count
            for version, count in self._keys.count_live_by_kek_version().items()
            if version != active
        )
        return RewrapResult(kek_version=active, rewrapped=rewrapped, remaining=remaining)

    def retire_kek(self, version: int) -> None:
        """Destroy a KEK version that wraps no live DEK any more (C4, PCI DSS 3.6.4, 3.7.5)."""
        status = self._kek.status()
        if version == status.active_version:
            raise KeyInUse(f"KEK v{version} is the active KEK")
        if all(entry.version != version for entry in status.versions):
            raise UnknownKekVersion(f"KEK v{version} does not exist")
        count = self._keys.count_live_by_kek_version().get(version, 0)
        if count:
            raise KeyInUse(f"KEK v{version} still protects {count} data keys; rewrap first")
        successor = min(entry.created_at for entry in status.versions if entry.version > version)
        self._check_grace(successor, f"KEK v{version}")
        try:
            self._kek.retire(version)
        except RetirementRefused as exc:
            raise KeyInUse(str(exc)) from exc

    # --- status --------------------------------------------------------------------------------

    def status(self, merchant_id: str | None = None) -> KeyringStatus:
        """Versions, creation times, ages and how much each version protects.

        With `merchant_id`, data keys and record counts are that merchant's; `protects_data_keys`
        of a KEK version always counts every merchant (it is what decides retirement).
        """
        now = self._clock.now()
        kek = self._kek.status()
        per_kek = self._keys.count_live_by_kek_version()
        rows = self._keys.list_deks(merchant_id)
        per_dek = self._records.count_by_dek_version(merchant_id)
        latest: dict[str, int] = {}
        for row in rows:
            latest[row.merchant_id] = max(row.version, latest.get(row.merchant_id, 0))
        known = {entry.version for entry in kek.versions}
        records_per_kek: dict[int, int] = {}
        for row in rows:
            if row.kek_version is not None:
                records = per_dek.get((row.merchant_id, row.version), 0)
                records_per_kek[row.kek_version] = records_per_kek.get(row.kek_version, 0) + records
        return KeyringStatus(
            kek_backend=kek.backend,
            kek_key_id=kek.key_id,
            kek_active_version=kek.active_version,
            kek_versions=tuple(
                KekVersionStatus(
                    version=entry.version,
                    created_at=entry.created_at,
                    age_seconds=max(0, now - entry.created_at),
                    active=entry.active,
                    non_extractable=entry.non_extractable,
                    protects_data_keys=per_kek.get(entry.version, 0),
                    protects_records=records_per_kek.get(entry.version, 0),
                )
                for entry in kek.versions
            ),
            missing_kek_versions=tuple(sorted(set(per_kek) - known)),
            data_keys=tuple(
                DekVersionStatus(
                    merchant_id=row.merchant_id,
                    version=row.version,
                    created_at=row.created_at,
                    age_seconds=max(0, now - row.created_at),
                    active=row.live and row.version == latest[row.merchant_id],
                    kek_version=row.kek_version,
                    protects_records=per_dek.get((row.merchant_id, row.version), 0),
                    encryptions=row.encryptions,
                    rotation_due=row.live and row.encryptions >= self._rotate_after,
                    destroyed_at=row.destroyed_at,
                )
                for row in rows
            ),
        )

    def close(self) -> None:
        """Overwrite and drop every cached DEK."""
        with self._lock:
            cached = list(self._cache.values())
            self._cache.clear()
        for key in cached:
            key.destroy()

    def __repr__(self) -> str:
        return f"Keyring(kek={self._kek.key_id!r})"

    # --- internals -----------------------------------------------------------------------------

    def _active_row(self, merchant_id: str) -> DekRow:
        row = self._keys.latest_dek(merchant_id)
        if row is None:
            self._create_dek_racing(merchant_id, 1)
            row = self._keys.latest_dek(merchant_id)
        if row is None or not row.live:
            # The newest version was destroyed (crypto-shredding, G3): refuse rather than quietly
            # start a new key for a merchant whose data was meant to be gone.
            raise NoDataKey(f"{merchant_id} has no active data key")
        if self._auto_rotate and row.encryptions >= self._rotate_after:
            row = self._rotated(merchant_id, row.version)
        return row

    def _rotated(self, merchant_id: str, exhausted: int) -> DekRow:
        self._create_dek_racing(merchant_id, exhausted + 1)
        row = self._keys.latest_dek(merchant_id)
        if row is None or not row.live or row.version <= exhausted:
            raise NoDataKey(f"{merchant_id} has no active data key")
        return row

    def _create_dek_racing(self, merchant_id: str, version: int) -> None:
        # Several processes may notice at once that a merchant needs version N; one insert wins
        # and the others use its key.
        with contextlib.suppress(DekConflict):
            self._create_dek(merchant_id, version)

    def _create_dek(self, merchant_id: str, version: int) -> int:
        material = generate_key_material()
        stored = False
        try:
            wrapped = self._kek.wrap(material, context=dek_context(merchant_id, version))
            self._keys.insert_dek(
                DekRow(
                    merchant_id=merchant_id,
                    version=version,
                    wrapped=wrapped,
                    created_at=self._clock.now(),
                )
            )
            stored = True
        finally:
            if not stored:
                _zero(material)
        self._remember((merchant_id, version), self._new_data_key(merchant_id, version, material))
        return version

    def _data_key(self, row: DekRow) -> DataKey:
        cache_key = (row.merchant_id, row.version)
        with self._lock:
            cached = self._cache.get(cache_key)
            if cached is not None:
                self._cache.move_to_end(cache_key)
                return cached
        if row.wrapped is None:
            raise NoDataKey(f"data key v{row.version} of {row.merchant_id} was destroyed")
        material = self._kek.unwrap(row.wrapped, context=dek_context(row.merchant_id, row.version))
        return self._remember(cache_key, self._new_data_key(row.merchant_id, row.version, material))

    def _new_data_key(self, merchant_id: str, version: int, material: bytearray) -> DataKey:
        lease = _StoreLease(
            self._keys, merchant_id, version, block=self._lease_block, limit=self._limit
        )
        return DataKey(material, version, counter=lease)

    def _remember(self, cache_key: tuple[str, int], key: DataKey) -> DataKey:
        with self._lock:
            existing = self._cache.get(cache_key)
            if existing is not None:
                key.destroy()  # another thread unwrapped it first; keep one copy
                return existing
            self._cache[cache_key] = key
            while len(self._cache) > self._max_cached:
                # Evicted keys are dropped, not destroyed: another thread may be using one right
                # now, and destroying it would fail that request. The garbage collector frees it.
                self._cache.popitem(last=False)
            return key

    def _forget(self, cache_key: tuple[str, int]) -> None:
        with self._lock:
            cached = self._cache.pop(cache_key, None)
        if cached is not None:
            cached.destroy()

    def _old_versions_with_records(self, merchant_id: str, active: int) -> list[int]:
        counts = self._records.count_by_dek_version(merchant_id)
        return sorted(
            version for (_, version), count in counts.items() if version != active and count
        )

    def _reencrypted(self, record: SealedRecord, old: DataKey, new: DataKey) -> Reencrypted:
        binding = Binding(record.merchant_id, record.record_id, record.purpose.value)
        try:
            plaintext = old.decrypt(record.ciphertext, binding)
        except DecryptionFailed:
            raise RecordUnreadable(self._describe(record)) from None
        return Reencrypted(
            old=record, dek_version=new.version, ciphertext=new.encrypt(plaintext, binding)
        )

    def _check_grace(self, superseded_at: int, what: str) -> None:
        waited = self._clock.now() - superseded_at
        if waited < self._grace:
            raise GracePeriod(
                f"{what} was superseded {waited}s ago; wait {self._grace - waited}s more"
            )

    @staticmethod
    def _describe(record: SealedRecord) -> str:
        return (
            f"record {record.record_id} ({record.purpose.value}) of {record.merchant_id} "
            "failed authentication"
        )


def _check_batch(batch_size: int) -> None:
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch size must be 1..{MAX_BATCH}")
