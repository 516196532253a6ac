"""Password hashing and policy (SECURITY-REQUIREMENTS I1): argon2id ≥ 46 MiB, upgrade on parameter
change, ≥ 12 characters with letters and digits, not the email, not reused, not common."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import extract_parameters
from argon2.low_level import Type
from pydantic import ValidationError

from bastionpay.config import Settings
from bastionpay.identity.passwords import (
    MAX_PASSWORD_LENGTH,
    InvalidCredentials,
    Passwords,
    check_policy,
    common_passwords,
    passwords_for,
)
from bastionpay.kernel.errors import InvalidRequestError

GOOD = "violet-anchor-4417-quartz"
EMAIL = "jordan.smith42@example.com"


@pytest.fixture(scope="module")
def passwords(tmp_path_factory: pytest.TempPathFactory) -> Passwords:
    return Passwords(Settings(data_dir=tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def good_hash(passwords: Passwords) -> str:
    return passwords.hash(GOOD)


def test_hash_is_argon2id_with_rfc9106_parameters(good_hash: str) -> None:
    params = extract_parameters(good_hash)
    # RFC 9106 section 4, second recommended option; I1 asks for ≥ 46 MiB.
    assert params.type is Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 64 * 1024, 4)
    assert params.memory_cost >= 46 * 1024
    assert params.salt_len == 16
    assert GOOD not in good_hash


def test_settings_refuse_less_than_46_mib(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, argon2_memory_kib=46 * 1024 - 1)
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, password_min_length=11)


def test_verify_raises_on_mismatch_and_on_a_corrupt_hash(
    passwords: Passwords, good_hash: str
) -> None:
    passwords.verify(good_hash, GOOD)
    for wrong in (GOOD.upper(), GOOD + " ", "", "x" * (MAX_PASSWORD_LENGTH + 1)):
        with pytest.raises(InvalidCredentials) as raised:
            passwords.verify(good_hash, wrong)
        assert raised.value.message == "Incorrect email or password."
        assert raised.value.code == "invalid_login"
    with pytest.raises(InvalidCredentials):
        passwords.verify("$argon2id$v=19$garbage", GOOD)
    with pytest.raises(InvalidCredentials):
        passwords.verify("", GOOD)


def test_unicode_is_normalised_before_hashing(passwords: Passwords) -> None:
    composed = "caf\u00e9-latte-2048-x"
    decomposed = "cafe\u0301-latte-2048-x"
    passwords.verify(passwords.hash(composed), decomposed)


def test_needs_rehash_when_parameters_are_raised(
    passwords: Passwords, good_hash: str, tmp_path: Path
) -> None:
    assert not passwords.needs_rehash(good_hash)
    stronger = Passwords(Settings(data_dir=tmp_path, argon2_time_cost=4))
    assert stronger.needs_rehash(good_hash)
    stronger.verify(good_hash, GOOD)  # old hashes keep working until upgraded at login
    assert not stronger.needs_rehash(stronger.hash(GOOD))
    assert passwords.needs_rehash("not a hash")


def test_burn_costs_a_verification_and_never_succeeds(passwords: Passwords) -> None:
    passwords.burn(GOOD)
    passwords.burn("x" * 10_000)


def test_passwords_for_shares_one_instance_per_parameter_set(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert passwords_for(settings) is passwords_for(Settings(data_dir=tmp_path))
    assert passwords_for(settings) is not passwords_for(
        Settings(data_dir=tmp_path, argon2_time_cost=4)
    )


def _policy(passwords: Passwords, password: str, **kwargs: object) -> None:
    options: dict[str, object] = {
        "email": EMAIL,
        "current_hash": None,
        "history": [],
        "min_length": 12,
    }
    options.update(kwargs)
    check_policy(passwords, password, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short-pw-12", "at least 12"),  # 11 characters
        ("only-letters-here", "letters and digits"),
        ("1234567890123", "letters and digits"),
        ("jordan.smith42@example.com", "email"),
        ("my-JORDAN.SMITH42-pass", "email"),  # contains the local part, case-insensitively
        ("1qaz2wsx3edc", "too common"),  # in the shipped list
        ("1QAZ2WSX3EDC", "too common"),  # compared case-insensitively
        ("Password123456", "too common"),  # a listed password with digits added
        ("!!dragon2024!!", "too common"),
        ("a1" * (MAX_PASSWORD_LENGTH // 2 + 1), "at most"),
    ],
)
def test_policy_refuses_weak_passwords(passwords: Passwords, password: str, why: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        _policy(passwords, password)
    assert raised.value.code == "password_too_weak"
    assert raised.value.param == "password"
    assert why in raised.value.message
    assert password not in raised.value.message  # never echo the secret (L3)


def test_policy_honours_a_higher_configured_minimum(passwords: Passwords) -> None:
    _policy(passwords, "mango-river-81")
    with pytest.raises(InvalidRequestError, match="at least 16"):
        _policy(passwords, "mango-river-81", min_length=16)


def test_policy_accepts_a_good_password(passwords: Passwords) -> None:
    _policy(passwords, GOOD)
    _policy(passwords, "Tr0ubadour&3-horses")


def test_policy_refuses_the_current_and_last_four_passwords(passwords: Passwords) -> None:
    old = [f"orchid-lantern-{n}-meadow" for n in range(6)]
    hashes = [passwords.hash(p) for p in old]
    current, history = hashes[0], hashes[1:]  # history newest first; only 4 are remembered
    for reused in (old[0], old[2], old[4]):
        with pytest.raises(InvalidRequestError) as raised:
            _policy(passwords, reused, current_hash=current, history=history)
        assert raised.value.code == "password_reused"
        assert reused not in raised.value.message
    # The sixth-newest is beyond "the last 4" (PCI DSS 8.3.7) and is allowed again.
    _policy(passwords, old[5], current_hash=current, history=history)


def test_common_password_list_is_shipped_with_its_source_and_licence() -> None:
    path = Path(__file__).parents[3] / "src/bastionpay/identity/data/common-passwords.txt"
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    text = "\n".join(header)
    assert "zxcvbn" in text
    assert "MIT License" in text
    common = common_passwords()
    assert 9_000 <= len(common) <= 10_000
    assert {"123456", "password", "qwerty", "1qaz2wsx3edc"} <= common
    assert all(entry == entry.lower() for entry in common)


def test_weaker_settings_do_not_downgrade_a_stronger_hash(tmp_path: Path) -> None:
    stronger = Passwords(Settings(data_dir=tmp_path, argon2_time_cost=4))
    weaker = Passwords(Settings(data_dir=tmp_path))
    assert not weaker.needs_rehash(stronger.hash(GOOD))
