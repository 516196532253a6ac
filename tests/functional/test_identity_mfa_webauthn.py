"""WebAuthn registration and login through the real `webauthn` verification, with a software
authenticator (issue 5 "Done when": WebAuthn registration and login; SECURITY-REQUIREMENTS I3, L1).

Every refusal below is the one `MfaFailed` and leaves an `identity.mfa.fail` audit event.
"""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import select
from tests.functional.test_identity_mfa import (
    T0,
    attempt,
    audit_rows,
    enrolled_totp,
    load,
    make_user,
)
from tests.support.soft_authenticator import SoftAuthenticator, b64url, b64url_decode

from bastionpay.db.uow import unit_of_work
from bastionpay.identity.mfa import (
    MFA_FAILED_MESSAGE,
    MfaFailed,
    factors,
    recovery,
    totp,
    webauthn,
)
from bastionpay.identity.models import MfaChallenge, WebAuthnCredential
from bastionpay.kernel.errors import InvalidRequestError, ResourceMissing
from bastionpay.runtime import Runtime

ORIGIN = "https://localhost:8443"  # Settings.public_url's default
RP_ID = "localhost"  # Settings.webauthn_rp_id's default


def authenticator(**kwargs: object) -> SoftAuthenticator:
    return SoftAuthenticator(origin=ORIGIN, rp_id=RP_ID, **kwargs)  # type: ignore[arg-type]


def reg_options(runtime: Runtime, uid: str, now: int = T0) -> tuple[str, str]:
    with unit_of_work(runtime.db, write=True) as session:
        return webauthn.registration_options(session, runtime.settings, load(session, uid), now=now)


def auth_options(runtime: Runtime, uid: str, now: int = T0) -> tuple[str, str]:
    with unit_of_work(runtime.db, write=True) as session:
        return webauthn.authentication_options(
            session, runtime.settings, load(session, uid), now=now
        )


def complete(
    runtime: Runtime, uid: str, challenge_id: str, credential_json: str, now: int = T0
) -> MfaFailed | None:
    return attempt(
        runtime,
        uid,
        lambda s, u: webauthn.complete_registration(
            s,
            runtime.settings,
            u,
            challenge_id=challenge_id,
            credential_json=credential_json,
            name="  YubiKey   5C ",
            now=now,
        ),
    )


def login(
    runtime: Runtime, uid: str, challenge_id: str, credential_json: str, now: int = T0
) -> MfaFailed | None:
    return attempt(
        runtime,
        uid,
        lambda s, u: webauthn.verify_authentication(
            s,
            runtime.settings,
            u,
            challenge_id=challenge_id,
            credential_json=credential_json,
            now=now,
        ),
    )


def registered(runtime: Runtime, uid: str, **kwargs: object) -> SoftAuthenticator:
    key = authenticator(**kwargs)
    challenge_id, options = reg_options(runtime, uid)
    assert complete(runtime, uid, challenge_id, key.register(options)) is None
    return key


def fail_reasons(runtime: Runtime, uid: str) -> list[str]:
    return [
        str(r.details.get("reason"))
        for r in audit_rows(runtime, uid)
        if r.action == "identity.mfa.fail"
    ]


def assert_refused(failure: MfaFailed | None) -> None:
    assert failure is not None
    assert failure.message == MFA_FAILED_MESSAGE
    assert failure.code == "mfa_failed"


def test_registration_then_login(runtime: Runtime) -> None:
    """Done when: "WebAuthn registration and login"."""
    uid = make_user(runtime)
    challenge_id, options_json = reg_options(runtime, uid)
    options = json.loads(options_json)
    assert options["rp"] == {"id": RP_ID, "name": "BastionPay"}
    # The user handle is the random account id, not the email (WebAuthn §14.6.1).
    assert options["user"]["id"] == b64url(uid.encode())
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["attestation"] == "none"
    assert options["excludeCredentials"] == []

    key = authenticator()
    assert complete(runtime, uid, challenge_id, key.register(options_json)) is None
    with unit_of_work(runtime.db, write=False) as session:
        user = load(session, uid)
        # The first factor enrols the account (I3: MFA mandatory).
        assert user.mfa_enrolled
        assert factors(session, user).webauthn == 1
        (stored,) = webauthn.list_credentials(session, user)
        assert stored.credential_id == key.credential_id
        assert stored.public_key == key.cose_public_key()
        assert stored.name == "YubiKey 5C"
        assert stored.transports == ["usb"]

    challenge_id, options_json = auth_options(runtime, uid, T0 + 10)
    options = json.loads(options_json)
    assert options["rpId"] == RP_ID
    assert options["userVerification"] == "preferred"
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(key.credential_id)]
    assert login(runtime, uid, challenge_id, key.assertion(options_json), T0 + 11) is None
    with unit_of_work(runtime.db, write=False) as session:
        row = session.scalar(select(WebAuthnCredential).where(WebAuthnCredential.user_id == uid))
        assert row is not None
        assert row.sign_count == 1
        assert row.last_used_at == T0 + 11

    actions = [(r.action, r.details.get("factor")) for r in audit_rows(runtime, uid)]
    assert actions == [("identity.mfa.enroll", "webauthn"), ("identity.mfa.verify", "webauthn")]
    assert all(r.actor_type == "user" and r.actor_id == uid for r in audit_rows(runtime, uid))


def test_passkey_without_counter_logs_in_repeatedly(runtime: Runtime) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid, counts=False)
    for i in range(2):
        challenge_id, options = auth_options(runtime, uid, T0 + i)
        assert login(runtime, uid, challenge_id, key.assertion(options), T0 + i) is None


def test_registered_credentials_are_excluded_and_cannot_be_registered_twice(
    runtime: Runtime,
) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid)
    challenge_id, options_json = reg_options(runtime, uid)
    excluded = json.loads(options_json)["excludeCredentials"]
    assert [c["id"] for c in excluded] == [b64url(key.credential_id)]
    # A browser would refuse; a hostile client trying anyway is refused by us.
    assert_refused(complete(runtime, uid, challenge_id, key.register(options_json)))
    assert fail_reasons(runtime, uid) == ["credential_exists"]
    # Another account cannot claim the same credential either.
    other = make_user(runtime)
    challenge_id, options_json = reg_options(runtime, other)
    assert_refused(complete(runtime, other, challenge_id, key.register(options_json)))


@pytest.mark.parametrize(
    "lie",
    [
        {"origin": "https://evil.example"},
        {"origin": "http://localhost:8443"},
        {"rp_id": "evil.example"},
    ],
    ids=["wrong-origin", "wrong-scheme", "wrong-rp-id"],
)
def test_registration_with_wrong_origin_or_rp_id_is_refused(
    runtime: Runtime, lie: dict[str, str]
) -> None:
    uid = make_user(runtime)
    challenge_id, options = reg_options(runtime, uid)
    assert_refused(complete(runtime, uid, challenge_id, authenticator().register(options, **lie)))
    with unit_of_work(runtime.db, write=False) as session:
        user = load(session, uid)
        assert factors(session, user).webauthn == 0
        assert not user.mfa_enrolled
    assert fail_reasons(runtime, uid) == ["invalid_attestation"]


@pytest.mark.parametrize(
    ("origin", "rp_id"),
    [("https://evil.example", None), (None, "evil.example")],
    ids=["wrong-origin", "wrong-rp-id"],
)
def test_login_with_wrong_origin_or_rp_id_is_refused(
    runtime: Runtime, origin: str | None, rp_id: str | None
) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid)
    challenge_id, options = auth_options(runtime, uid)
    response = key.assertion(options, origin=origin, rp_id=rp_id)
    assert_refused(login(runtime, uid, challenge_id, response))
    assert fail_reasons(runtime, uid) == ["invalid_assertion"]


def test_replayed_challenge_is_refused(runtime: Runtime) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid, counts=False)
    challenge_id, options = auth_options(runtime, uid)
    response = key.assertion(options)
    assert login(runtime, uid, challenge_id, response) is None
    # The very same response again: its challenge is spent.
    assert_refused(login(runtime, uid, challenge_id, response))
    # The old response against a fresh challenge: it signed the wrong challenge.
    fresh_id, _ = auth_options(runtime, uid)
    assert_refused(login(runtime, uid, fresh_id, response))
    assert fail_reasons(runtime, uid) == ["challenge_replayed", "invalid_assertion"]
    # A failed attempt spends its challenge too: a retry needs new options.
    next_id, next_options = auth_options(runtime, uid)
    assert_refused(login(runtime, uid, next_id, key.assertion(next_options, tamper_signature=True)))
    assert_refused(login(runtime, uid, next_id, key.assertion(next_options)))


def test_expired_challenge_is_refused(runtime: Runtime) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid)
    challenge_id, options = auth_options(runtime, uid, T0)
    late = T0 + webauthn.CHALLENGE_TTL_SECONDS
    assert_refused(login(runtime, uid, challenge_id, key.assertion(options), late))
    # Registration challenges expire the same way.
    reg_id, reg = reg_options(runtime, uid, T0)
    assert_refused(complete(runtime, uid, reg_id, authenticator().register(reg), late + 1))
    assert fail_reasons(runtime, uid) == ["challenge_expired", "challenge_expired"]


def test_challenges_belong_to_one_user_and_one_ceremony(runtime: Runtime) -> None:
    alice, bob = make_user(runtime), make_user(runtime)
    key = registered(runtime, alice)
    # Bob's challenge cannot complete Alice's login.
    bob_challenge, options = auth_options(runtime, bob)
    assert_refused(login(runtime, alice, bob_challenge, key.assertion(options)))
    # A registration challenge is not an authentication challenge.
    reg_id, reg = reg_options(runtime, alice)
    assert_refused(login(runtime, alice, reg_id, key.assertion(reg, rp_id=RP_ID)))
    assert fail_reasons(runtime, alice) == ["unknown_challenge", "unknown_challenge"]


def test_another_users_credential_is_refused(runtime: Runtime) -> None:
    alice, bob = make_user(runtime), make_user(runtime)
    registered(runtime, alice)
    bobs_key = registered(runtime, bob)
    challenge_id, options = auth_options(runtime, alice)
    # Bob's authenticator signs Alice's challenge correctly; it is still not Alice's factor.
    assert_refused(login(runtime, alice, challenge_id, bobs_key.assertion(options)))
    # Even claiming Alice's user handle does not help.
    challenge_id, options = auth_options(runtime, alice)
    forged = bobs_key.assertion(options, user_handle=alice.encode())
    assert_refused(login(runtime, alice, challenge_id, forged))
    assert fail_reasons(runtime, alice) == ["unknown_credential", "unknown_credential"]


def test_user_handle_must_match(runtime: Runtime) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid)
    challenge_id, options = auth_options(runtime, uid)
    assert_refused(login(runtime, uid, challenge_id, key.assertion(options, user_handle=b"usr_x")))
    assert fail_reasons(runtime, uid) == ["user_handle_mismatch"]


def test_tampered_signature_is_refused(runtime: Runtime) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid)
    challenge_id, options = auth_options(runtime, uid)
    assert_refused(login(runtime, uid, challenge_id, key.assertion(options, tamper_signature=True)))
    # A signature from a different key under the registered credential id: refused.
    impostor = authenticator(credential_id=key.credential_id, user_handle=uid.encode())
    challenge_id, options = auth_options(runtime, uid)
    assert_refused(login(runtime, uid, challenge_id, impostor.assertion(options)))
    assert fail_reasons(runtime, uid) == ["invalid_assertion", "invalid_assertion"]


def test_sign_count_regression_is_refused_as_a_clone(runtime: Runtime) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid)
    challenge_id, options = auth_options(runtime, uid)
    assert login(runtime, uid, challenge_id, key.assertion(options, sign_count=5)) is None
    for stale in (5, 3, 0):
        challenge_id, options = auth_options(runtime, uid)
        assert_refused(login(runtime, uid, challenge_id, key.assertion(options, sign_count=stale)))
    assert fail_reasons(runtime, uid) == ["sign_count_regression"] * 3
    with unit_of_work(runtime.db, write=False) as session:
        row = session.scalar(select(WebAuthnCredential).where(WebAuthnCredential.user_id == uid))
        assert row is not None
        assert row.sign_count == 5
    challenge_id, options = auth_options(runtime, uid)
    assert login(runtime, uid, challenge_id, key.assertion(options, sign_count=6)) is None


def test_malformed_responses_are_refused(runtime: Runtime) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid)
    for junk in (
        "",
        "{}",
        "[]",
        "not json",
        json.dumps({"id": "x", "rawId": "!!", "type": "public-key", "response": {}}),
    ):
        challenge_id, _ = auth_options(runtime, uid)
        assert_refused(login(runtime, uid, challenge_id, junk))
        reg_id, _ = reg_options(runtime, uid)
        assert_refused(complete(runtime, uid, reg_id, junk))
    assert factors_count(runtime, uid) == 1
    assert key.credential_id


def factors_count(runtime: Runtime, uid: str) -> int:
    with unit_of_work(runtime.db, write=False) as session:
        return factors(session, load(session, uid)).webauthn


def test_spent_challenges_are_cleaned_up(runtime: Runtime) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid, counts=False)
    for i in range(3):
        challenge_id, options = auth_options(runtime, uid, T0 + i)
        assert login(runtime, uid, challenge_id, key.assertion(options), T0 + i) is None
    auth_options(runtime, uid, T0 + 10)
    with unit_of_work(runtime.db, write=False) as session:
        rows = list(session.scalars(select(MfaChallenge).where(MfaChallenge.user_id == uid)))
        assert [r.used_at for r in rows] == [None]


def test_removing_factors_never_leaves_an_enrolled_user_with_none(runtime: Runtime) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid)
    with unit_of_work(runtime.db, write=False) as session:
        (credential,) = webauthn.list_credentials(session, load(session, uid))
        wac = credential.id
    with unit_of_work(runtime.db, write=True) as session:
        with pytest.raises(InvalidRequestError) as refused:
            webauthn.remove_webauthn(session, load(session, uid), wac)
        assert refused.value.code == "mfa_last_factor"
    # With a second factor the key can go; then TOTP is the last one and stays.
    enrolled_totp(runtime, uid)
    with unit_of_work(runtime.db, write=True) as session:
        webauthn.remove_webauthn(session, load(session, uid), wac)
    with unit_of_work(runtime.db, write=True) as session:
        user = load(session, uid)
        assert factors(session, user).webauthn == 0
        with pytest.raises(InvalidRequestError):
            totp.remove_totp(session, user)
    # A removed key no longer logs in.
    challenge_id, options = auth_options(runtime, uid)
    assert_refused(login(runtime, uid, challenge_id, key.assertion(options)))
    # Another user's credential id is a 404, not a removal.
    other = make_user(runtime)
    other_key = registered(runtime, other)
    enrolled_totp(runtime, other)
    with unit_of_work(runtime.db, write=False) as session:
        (others,) = webauthn.list_credentials(session, load(session, other))
    with unit_of_work(runtime.db, write=True) as session, pytest.raises(ResourceMissing):
        webauthn.remove_webauthn(session, load(session, uid), others.id)
    assert other_key.credential_id == others.credential_id
    removed = [r for r in audit_rows(runtime, uid) if r.action == "identity.mfa.remove"]
    assert [(r.details["factor"], r.details["credential"]) for r in removed] == [("webauthn", wac)]


@pytest.mark.parametrize(
    ("public_url", "origin"),
    [
        ("https://localhost:8443", "https://localhost:8443"),
        ("https://Pay.Example.COM/", "https://pay.example.com"),
        ("https://pay.example.com:443/console", "https://pay.example.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_expected_origin_is_the_browsers_serialisation(
    runtime: Runtime, public_url: str, origin: str
) -> None:
    settings = runtime.settings.model_copy(update={"public_url": public_url})
    assert webauthn.expected_origin(settings) == origin


def test_a_disabled_user_proves_nothing(runtime: Runtime) -> None:
    uid = make_user(runtime)
    key = registered(runtime, uid)
    with unit_of_work(runtime.db, write=True) as session:
        codes = recovery.generate(session, runtime.identity_keys, load(session, uid), now=T0)
    challenge_id, options = auth_options(runtime, uid)
    with unit_of_work(runtime.db, write=True) as session:
        load(session, uid).status = "disabled"
    assert_refused(login(runtime, uid, challenge_id, key.assertion(options)))
    assert_refused(
        attempt(
            runtime, uid, lambda s, u: recovery.use(s, runtime.identity_keys, u, codes[0], now=T0)
        )
    )
    assert fail_reasons(runtime, uid) == ["user_inactive", "user_inactive"]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    mutated = bytearray(data)
    choice = rng.randrange(3)
    if choice == 0 and mutated:
        mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
    elif choice == 1 and mutated:
        del mutated[rng.randrange(len(mutated)) :]
    else:
        mutated += rng.randbytes(rng.randrange(1, 8))
    return bytes(mutated)


def test_corrupted_responses_fail_as_mfa_failed_never_as_a_crash(runtime: Runtime) -> None:
    """Bit flips, truncation and trailing garbage in every binary field: each attempt either
    fails with `MfaFailed` or (for a harmless flip, e.g. in the AAGUID) succeeds — no other error
    escapes to become a 500, and no corrupted assertion logs in."""
    rng = random.Random(20261128)
    uid = make_user(runtime)
    key = registered(runtime, uid, counts=False)
    for _ in range(40):
        challenge_id, options = auth_options(runtime, uid)
        response = json.loads(key.assertion(options))
        field = rng.choice(["clientDataJSON", "authenticatorData", "signature"])
        raw = b64url_decode(response["response"][field])
        response["response"][field] = b64url(_mutate(rng, raw))
        assert_refused(login(runtime, uid, challenge_id, json.dumps(response)))

        reg_id, reg = reg_options(runtime, uid)
        response = json.loads(authenticator().register(reg))
        field = rng.choice(["clientDataJSON", "attestationObject"])
        raw = b64url_decode(response["response"][field])
        response["response"][field] = b64url(_mutate(rng, raw))
        complete(runtime, uid, reg_id, json.dumps(response))  # raises on anything but MfaFailed
