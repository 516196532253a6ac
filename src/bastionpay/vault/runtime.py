"""The process-wide objects a running vault needs, built once from `VaultSettings`.

Keys live under `<data_dir>/vault/keys`, apart from the api's (`<data_dir>/keys`): the vault's
audit keys, the card-fingerprint key and the publishable-key hashing key. The KEK is a 0600 key
file there in development or a PKCS#11 token (`kek_backend=pkcs11`, settings from
`BASTIONPAY_PKCS11_*`) in production (C4, PCI DSS 3.6.1.2: stored apart from the data keys, which
are in the database, wrapped).

Tests build a runtime with a frozen clock, a short acquirer timeout or another KEK.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bastionpay.acquirer.client import AcquirerClient
from bastionpay.audit.keys import AuditKeys, load_audit_keys
from bastionpay.crypto.file_kek import FileKek
from bastionpay.crypto.kek import KeyEncryptionKey
from bastionpay.crypto.keyed_hash import KeyedHasher
from bastionpay.crypto.keyfiles import load_or_create_key
from bastionpay.db.engine import Database
from bastionpay.edge.ratelimit import RateLimits
from bastionpay.kernel.clock import Clock, SystemClock
from bastionpay.vault import migrate
from bastionpay.vault.auditlog import AuditQueue
from bastionpay.vault.database import open_database
from bastionpay.vault.fingerprint import CardFingerprinter
from bastionpay.vault.keyring import Keyring
from bastionpay.vault.settings import VaultSettings
from bastionpay.vault.store import SqlKeyStore, SqlRecordStore


class PublicUrl:
    """Where browsers reach the public listener; known once it is bound (port 0 in tests)."""

    def __init__(self, configured: str | None = None) -> None:
        self._value = configured
        self._configured = configured is not None

    def bound(self, host: str, port: int) -> None:
        if not self._configured:
            shown = f"[{host}]" if ":" in host else host
            self._value = f"https://{shown}:{port}"

    @property
    def value(self) -> str:
        if self._value is None:
            raise RuntimeError("the public listener's address is not known yet")
        return self._value


@dataclass(frozen=True)
class VaultRuntime:
    settings: VaultSettings
    db: Database
    clock: Clock
    kek: KeyEncryptionKey
    keys: SqlKeyStore
    records: SqlRecordStore
    keyring: Keyring
    fingerprints: CardFingerprinter
    publishable_keys: KeyedHasher  # keyed hashes of publishable keys (never the keys, I7)
    audit_keys: AuditKeys
    acquirer: AcquirerClient
    rate_limits: RateLimits
    # 3-D Secure (issue 4, item 7): the key of the authentication values' MAC (the vault plays the
    # access control server), and the public address put in challenge URLs.
    three_ds_mac: KeyedHasher
    three_ds_challenges: KeyedHasher
    public_url: PublicUrl
    audit_queue: AuditQueue = field(default_factory=AuditQueue)

    def close(self) -> None:
        self.keyring.close()  # zeroes cached data keys
        self.acquirer.close()
        close = getattr(self.kek, "close", None)
        if callable(close):
            close()
        self.db.dispose()


def open_kek(settings: VaultSettings, clock: Clock) -> KeyEncryptionKey:
    if settings.kek_backend == "pkcs11":
        # Imported only when configured: python-pkcs11 loads a native module.
        from bastionpay.crypto.pkcs11_kek import Pkcs11Config, Pkcs11Kek  # noqa: PLC0415

        return Pkcs11Kek(Pkcs11Config.from_env(), clock=clock, create_if_missing=True)
    return FileKek(settings.resolved_kek_file, clock=clock)


def initialise_data_dir(settings: VaultSettings) -> None:
    data_dir = settings.resolved_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.keys_dir.chmod(0o700)


def build_vault_runtime(
    settings: VaultSettings,
    *,
    clock: Clock | None = None,
    kek: KeyEncryptionKey | None = None,
    acquirer: AcquirerClient | None = None,
    upgrade: bool = True,
) -> VaultRuntime:
    """Create the data dir and keys if missing, migrate the vault database, wire everything."""
    initialise_data_dir(settings)
    url = settings.resolved_database_url()
    if upgrade:
        migrate.upgrade(url)
    the_clock: Clock = clock or SystemClock()
    db = open_database(url)
    the_kek = kek or open_kek(settings, the_clock)
    keys, records = SqlKeyStore(db), SqlRecordStore(db)
    keys_dir = settings.keys_dir
    three_ds_key = load_or_create_key(keys_dir / "three-ds.key")
    return VaultRuntime(
        settings=settings,
        db=db,
        clock=the_clock,
        kek=the_kek,
        keys=keys,
        records=records,
        keyring=Keyring(
            the_kek,
            keys,
            records,
            clock=the_clock,
            supersede_grace_seconds=settings.key_grace_seconds,
        ),
        fingerprints=CardFingerprinter(load_or_create_key(keys_dir / "fingerprint-hmac.key")),
        publishable_keys=KeyedHasher(
            load_or_create_key(keys_dir / "publishable-key-hmac.key"), purpose="vault-pk"
        ),
        audit_keys=load_audit_keys(keys_dir),
        acquirer=acquirer
        or AcquirerClient(
            settings.acquirer_host,
            settings.acquirer_port,
            card_acceptor_id=settings.card_acceptor_id,
            terminal_id=settings.terminal_id,
            timeout=settings.acquirer_timeout_seconds,
            reversal_attempts=settings.acquirer_reversal_attempts,
            clock=the_clock,
        ),
        rate_limits=RateLimits(settings.redis_url),
        three_ds_mac=KeyedHasher(three_ds_key, purpose="vault-3ds-cavv"),
        three_ds_challenges=KeyedHasher(three_ds_key, purpose="vault-3ds-challenge"),
        public_url=PublicUrl(settings.public_url),
    )
