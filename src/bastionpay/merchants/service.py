"""Merchants and API keys: creation, issuance (shown once), revocation, authentication.

Keys are stored only as HMAC-SHA-256 keyed hashes (SECURITY-REQUIREMENTS I7); lookup is by the hash,
so verifying a key is one indexed read and never compares plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bastionpay.crypto.keyed_hash import KeyedHasher
from bastionpay.edge.networks import parse_networks
from bastionpay.edge.ratelimit import parse_limit
from bastionpay.kernel.errors import AuthenticationError, InvalidRequestError, ResourceMissing
from bastionpay.kernel.ids import new_id, random_base62
from bastionpay.merchants.models import ApiKey, Merchant
from bastionpay.merchants.permissions import ALL_PERMISSIONS

KEY_RANDOM_LENGTH = 32  # ~190 bits from the CSPRNG
KEY_PREFIXES = {"secret": "sk", "publishable": "pk", "restricted": "rk"}
# Writing last_used_at on every request would turn every read into a write on one hot row;
# once a minute is precise enough for "last used" and for spotting unused keys.
LAST_USED_RESOLUTION_SECONDS = 60


@dataclass(frozen=True)
class IssuedKey:
    record: ApiKey
    plaintext: str  # shown once to the caller, never stored


@dataclass(frozen=True)
class Caller:
    """The authenticated principal of a request. Holds no secret."""

    merchant_id: str
    livemode: bool
    key_id: str
    kind: str
    permissions: frozenset[str]
    # The edge's per-key and per-merchant controls (I7, T4); None: none set.
    allowed_ips: tuple[str, ...] | None = None
    rate_limit_read: str | None = None
    rate_limit_write: str | None = None
    # The merchant's risk settings (issue 7).
    timezone: str | None = None
    risk_failure_policy: str | None = None
    # Who: an API key, an operator ("user", `key_id` holds the user id) or an OAuth app
    # ("oauth_client", `key_id` holds the client id) (identity issue, I5).
    actor_type: str = "api_key"
    # Operators only: when their session last proved a second factor (step-up, I3).
    mfa_at: int | None = None


@dataclass(frozen=True)
class Authenticated:
    """A valid key and its merchant's settings the pipeline needs, read in one query."""

    record: ApiKey
    rate_limit_read: str | None
    rate_limit_write: str | None
    timezone: str | None = None
    risk_failure_policy: str | None = None


def _redact(plaintext: str) -> str:
    prefix = plaintext[: plaintext.index("_", 3) + 1]
    return f"{prefix}…{plaintext[-4:]}"


def create_merchant(session: Session, name: str, now: int) -> Merchant:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequestError("Merchant name must be 1–200 characters.", param="name")
    merchant = Merchant(id=new_id("acct"), name=name, created=now)
    session.add(merchant)
    session.flush()
    return merchant


def issue_key(
    session: Session,
    hasher: KeyedHasher,
    *,
    merchant_id: str,
    kind: str,
    livemode: bool,
    now: int,
    permissions: frozenset[str] | None = None,
) -> IssuedKey:
    if kind not in KEY_PREFIXES:
        raise InvalidRequestError(f"Unknown key kind: {kind}", param="kind")
    if session.scalar(select(Merchant.pk).where(Merchant.id == merchant_id)) is None:
        raise ResourceMissing("account", merchant_id, param="merchant")
    stored_permissions: list[str] | None = None
    if kind == "restricted":
        requested = permissions or frozenset()
        unknown = requested - ALL_PERMISSIONS
        if unknown or not requested:
            raise InvalidRequestError(
                "A restricted key needs at least one known permission; unknown: "
                + ", ".join(sorted(unknown)),
                param="permissions",
            )
        stored_permissions = sorted(requested)
    mode = "live" if livemode else "test"
    plaintext = f"{KEY_PREFIXES[kind]}_{mode}_{random_base62(KEY_RANDOM_LENGTH)}"
    record = ApiKey(
        id=new_id("key"),
        merchant_id=merchant_id,
        livemode=livemode,
        kind=kind,
        key_hash=hasher.hexdigest(plaintext),
        redacted=_redact(plaintext),
        permissions=stored_permissions,
        created=now,
    )
    session.add(record)
    session.flush()
    return IssuedKey(record=record, plaintext=plaintext)


def revoke_key(session: Session, key_id: str, now: int) -> ApiKey:
    record = session.scalar(select(ApiKey).where(ApiKey.id == key_id).with_for_update())
    if record is None:
        raise ResourceMissing("api_key", key_id)
    if record.revoked_at is None:
        record.revoked_at = now
    return record


def _mask_presented(presented: str) -> str:
    # Stripe echoes a masked key in the 401 message; never more than the last 4 characters.
    if len(presented) <= 8:
        return "*" * len(presented)
    head = presented[:8] if presented[:3] in ("sk_", "pk_", "rk_") else ""
    return f"{head}{'*' * 12}{presented[-4:]}"


def authenticate(session: Session, hasher: KeyedHasher, presented: str | None) -> Authenticated:
    if not presented:
        raise AuthenticationError(
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth "
            "(e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
        )
    row = session.execute(
        select(
            ApiKey,
            Merchant.rate_limit_read,
            Merchant.rate_limit_write,
            Merchant.timezone,
            Merchant.risk_failure_policy,
        )
        .join(Merchant, Merchant.id == ApiKey.merchant_id)
        .where(ApiKey.key_hash == hasher.hexdigest(presented))
    ).first()
    record = None if row is None else row[0]
    if row is None or record is None or record.revoked_at is not None:
        # One message for unknown and revoked keys: no oracle for which keys once existed.
        raise AuthenticationError(
            f"Invalid API Key provided: {_mask_presented(presented)}", code="api_key_invalid"
        )
    return Authenticated(
        record=record,
        rate_limit_read=row[1],
        rate_limit_write=row[2],
        timezone=row[3],
        risk_failure_policy=row[4],
    )


def caller_for(found: Authenticated) -> Caller:
    record = found.record
    if record.kind == "secret":
        permissions = ALL_PERMISSIONS
    elif record.kind == "restricted":
        permissions = frozenset(record.permissions or ())
    else:
        permissions = frozenset()
    return Caller(
        merchant_id=record.merchant_id,
        livemode=record.livemode,
        key_id=record.id,
        kind=record.kind,
        permissions=permissions,
        allowed_ips=tuple(record.allowed_ips) if record.allowed_ips else None,
        rate_limit_read=found.rate_limit_read,
        rate_limit_write=found.rate_limit_write,
        timezone=found.timezone,
        risk_failure_policy=found.risk_failure_policy,
    )


def set_allowed_ips(session: Session, key_id: str, cidrs: list[str] | None) -> ApiKey:
    """Restrict a key to networks (I7); an empty list or None lifts the restriction."""
    record = session.scalar(select(ApiKey).where(ApiKey.id == key_id).with_for_update())
    if record is None:
        raise ResourceMissing("api_key", key_id)
    try:
        networks = parse_networks(cidrs or [])
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="allowed_ips") from None
    record.allowed_ips = [str(n) for n in networks] or None
    return record


def set_risk_settings(
    session: Session,
    merchant_id: str,
    *,
    policy: str | None = None,
    timezone: str | None = None,
) -> Merchant:
    """The merchant's risk failure policy ("open"/"closed") and time zone (issue 7)."""
    merchant = session.scalar(select(Merchant).where(Merchant.id == merchant_id).with_for_update())
    if merchant is None:
        raise ResourceMissing("account", merchant_id, param="merchant")
    if policy is not None:
        if policy not in ("open", "closed"):
            raise InvalidRequestError("The policy must be open or closed.", param="policy")
        merchant.risk_failure_policy = policy
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidRequestError(
                f"Unknown time zone {timezone[:64]!r}: use an IANA name like Europe/Paris.",
                param="timezone",
            ) from None
        merchant.timezone = timezone
    return merchant


def set_risk_policy(session: Session, merchant_id: str, policy: str) -> Merchant:
    return set_risk_settings(session, merchant_id, policy=policy)


def set_rate_limits(
    session: Session, merchant_id: str, *, read: str | None, write: str | None
) -> Merchant:
    """Per-merchant overrides of the platform's API rate limits (T4); None restores the default."""
    merchant = session.scalar(select(Merchant).where(Merchant.id == merchant_id).with_for_update())
    if merchant is None:
        raise ResourceMissing("account", merchant_id, param="merchant")
    for param, value in (("read", read), ("write", write)):
        if value is not None:
            try:
                parse_limit(value)
            except ValueError:
                raise InvalidRequestError(
                    f"Invalid rate limit {value[:40]!r}: use e.g. 500/second.", param=param
                ) from None
    merchant.rate_limit_read = read
    merchant.rate_limit_write = write
    return merchant


def touch_last_used(session: Session, key_pk: int, now: int) -> None:
    """Record use at most once per LAST_USED_RESOLUTION_SECONDS (one conditional update)."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.pk == key_pk)
        .where(
            (ApiKey.last_used_at.is_(None))
            | (ApiKey.last_used_at < now - LAST_USED_RESOLUTION_SECONDS)
        )
        .values(last_used_at=now)
    )


def needs_touch(record: ApiKey, now: int) -> bool:
    return record.last_used_at is None or record.last_used_at < now - LAST_USED_RESOLUTION_SECONDS
