"""Card entry to authorization: hosted fields → vault → ISO 8583 acquirer, over the real listeners.

Approvals, declines and a timeout that is reversed (issue 4, items 1, 6); capture, void and refund;
the CVC deleted at authorization and purged after 10 minutes (C1); detokenization audited (L1);
and scans: no clear card number in any column of the vault database, no CVC ciphertext left in
its files after deletion, no card number or CVC in the logs (C1, C3, C5).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from sqlalchemy import LargeBinary, String, Text, select, text
from tests.functional.test_vault_support import (
    VaultEnv,
    new_merchant,
    register_key,
    tokenize,
    vault_env,
)

from bastionpay.acquirer.faults import Fault, MessageFault
from bastionpay.kernel.ids import random_base62
from bastionpay.kernel.pan import find_pans
from bastionpay.vault import followups, payments
from bastionpay.vault.models import Cvc, vault_metadata

__all__ = ["vault_env"]

CVC = "913"  # the test cards' CVC: distinctive enough to search the logs for `cvc=913`
TIMEOUT_CARD = "4000009900000210"  # the simulator's "no answer" card


def _card(env: VaultEnv, merchant: str, number: str) -> str:
    key = register_key(env, merchant)
    response = tokenize(env, key, number, cvc=CVC)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _authorize(env: VaultEnv, merchant: str, pm: str, **extra: Any) -> Any:
    body = {
        "merchant_id": merchant,
        "payment_method": pm,
        "livemode": False,
        "amount": 2000,
        "currency": "usd",
        "reference": f"pi_{random_base62(12)}:1",
        **extra,
    }
    with env.api() as api:
        return api.post("/internal/v1/authorizations", json=body)


def _cvc_rows(env: VaultEnv, pm: str) -> list[Any]:
    with env.runtime.db.engine.connect() as conn:
        return list(conn.execute(select(Cvc.ciphertext).where(Cvc.card_id == pm)).scalars())


def test_an_approval_uses_the_cvc_once_then_deletes_it(vault_env: VaultEnv) -> None:
    merchant = new_merchant()
    pm = _card(vault_env, merchant, "4242424242424242")
    [cvc_ciphertext] = _cvc_rows(vault_env, pm)
    with vault_env.api() as api:
        before = api.get(f"/internal/v1/payment_methods/{pm}", params={"merchant_id": merchant})
    assert before.json()["card"]["checks"]["cvc_check"] == "unchecked"

    response = _authorize(vault_env, merchant, pm)
    assert response.status_code == 200, response.text
    authorization = response.json()
    assert authorization["status"] == "approved"
    assert authorization["cvc_check"] == "pass"  # the CVC reached the issuer…
    assert len(authorization["approval_code"]) == 6
    assert _cvc_rows(vault_env, pm) == []  # …and is gone from the vault (C1)

    # Not even its ciphertext is left in the database files once the background purge has run,
    # though no CVC expired (SQLite secure_delete + WAL truncate; security review M1: the WAL frame
    # that inserted the CVC outlived the authorization when only expiries truncated the WAL).
    assert payments.purge_expired_cvcs(vault_env.runtime) == 0
    files = [vault_env.data_dir / name for name in ("vault.db", "vault.db-wal")]
    raw = b"".join(path.read_bytes() for path in files if path.exists())
    assert bytes(cvc_ciphertext) not in raw

    view = vault_env.acquirer.issuer.authorization(
        "BASTIONPAY     ", authorization["network"]["rrn"]
    )
    assert view is not None and view.held == 2000

    detokenized = [
        details
        for action, _, details in vault_env.audit_actions()
        if action == "vault.card.detokenize" and details["payment_method"] == pm
    ]
    assert detokenized == [
        {
            "payment_method": pm,
            "reference": authorization["reference"],
            "purpose": "authorization",
            "cvc": True,
        }
    ]


def test_capture_refund_and_replays(vault_env: VaultEnv) -> None:
    merchant = new_merchant()
    pm = _card(vault_env, merchant, "5555555555554444")
    authorization = _authorize(vault_env, merchant, pm).json()
    auth_id = authorization["id"]
    replay = _authorize(vault_env, merchant, pm, reference=authorization["reference"])
    assert replay.json()["id"] == auth_id  # same reference: the stored answer, no new 0100
    with vault_env.api() as api:
        captured = api.post(
            f"/internal/v1/authorizations/{auth_id}/capture",
            json={"merchant_id": merchant, "amount": 1500},
        )
        refund = api.post(
            f"/internal/v1/authorizations/{auth_id}/refunds",
            json={"merchant_id": merchant, "amount": 500, "reference": "re_1"},
        )
        again = api.post(
            f"/internal/v1/authorizations/{auth_id}/refunds",
            json={"merchant_id": merchant, "amount": 500, "reference": "re_1"},
        )
        too_much = api.post(
            f"/internal/v1/authorizations/{auth_id}/refunds",
            json={"merchant_id": merchant, "amount": 1001, "reference": "re_2"},
        )
        void = api.post(
            f"/internal/v1/authorizations/{auth_id}/void", json={"merchant_id": merchant}
        )
        stored = api.get(f"/internal/v1/authorizations/{auth_id}", params={"merchant_id": merchant})
    assert captured.status_code == 200 and captured.json()["status"] == "captured"
    assert captured.json()["amount_captured"] == 1500
    assert refund.status_code == 200 and refund.json()["status"] == "succeeded"
    assert again.json()["id"] == refund.json()["id"]  # replayed, not paid twice
    assert too_much.status_code == 400
    assert void.status_code == 400  # captured: refund it instead
    assert stored.json()["amount_refunded"] == 500


def test_an_unanswered_refund_is_retried_only_with_its_own_amount(vault_env: VaultEnv) -> None:
    """A refund the acquirer did not answer stays `unknown`; a retry with its reference resends
    the reserved amount, and another amount under that reference is refused (review I4)."""
    merchant = new_merchant()
    pm = _card(vault_env, merchant, "5555555555554444")
    auth_id = _authorize(vault_env, merchant, pm).json()["id"]
    server = vault_env.acquirer.server
    normal = server.settings
    with vault_env.api() as api:
        path = f"/internal/v1/authorizations/{auth_id}"
        assert api.post(f"{path}/capture", json={"merchant_id": merchant}).status_code == 200
        server.settings = dataclasses.replace(
            normal,
            faults={"0200": MessageFault(Fault.NO_ANSWER)},
        )
        try:
            lost = api.post(
                f"{path}/refunds", json={"merchant_id": merchant, "amount": 500, "reference": "r1"}
            )
        finally:
            server.settings = normal
        other = api.post(
            f"{path}/refunds", json={"merchant_id": merchant, "amount": 900, "reference": "r1"}
        )
        retried = api.post(
            f"{path}/refunds", json={"merchant_id": merchant, "amount": 500, "reference": "r1"}
        )
        stored = api.get(path, params={"merchant_id": merchant}).json()
    assert lost.status_code == 503 and lost.json()["error"]["code"] == "acquirer_unavailable"
    assert other.status_code == 400 and other.json()["error"]["code"] == "reference_reused"
    assert retried.status_code == 200 and retried.json()["status"] == "succeeded"
    assert stored["amount_refunded"] == 500


def test_void_releases_the_hold(vault_env: VaultEnv) -> None:
    merchant = new_merchant()
    key = register_key(vault_env, merchant)
    amex = tokenize(vault_env, key, "378282246310005", cvc="7319").json()["id"]
    authorization = _authorize(vault_env, merchant, amex).json()
    with vault_env.api() as api:
        void = api.post(
            f"/internal/v1/authorizations/{authorization['id']}/void",
            json={"merchant_id": merchant},
        )
    assert void.json()["status"] == "voided"
    view = vault_env.acquirer.issuer.authorization(
        "BASTIONPAY     ", authorization["network"]["rrn"]
    )
    assert view is not None and view.held == 0


def test_a_decline_carries_stripe_s_codes(vault_env: VaultEnv) -> None:
    merchant = new_merchant()
    pm = _card(vault_env, merchant, "4000000000009995")
    response = _authorize(vault_env, merchant, pm)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "declined"
    decline = body["decline"]
    assert (decline["code"], decline["decline_code"], decline["iso_code"]) == (
        "card_declined",
        "insufficient_funds",
        "51",
    )
    assert decline["reversed"] is False
    assert _cvc_rows(vault_env, pm) == []  # deleted whatever the outcome (C1)


def test_a_timeout_is_reversed_and_never_double_charges(vault_env: VaultEnv) -> None:
    merchant = new_merchant()
    pm = _card(vault_env, merchant, TIMEOUT_CARD)
    response = _authorize(vault_env, merchant, pm)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "declined"
    assert body["decline"]["reversed"] is True
    assert (body["decline"]["iso_code"], body["decline"]["fault"]) == ("68", "timeout")
    view = vault_env.acquirer.issuer.authorization("BASTIONPAY     ", body["network"]["rrn"])
    assert view is None or view.held == 0


def test_an_unanswered_reversal_stays_pending_until_a_retry_succeeds(vault_env: VaultEnv) -> None:
    merchant = new_merchant()
    pm = _card(vault_env, merchant, TIMEOUT_CARD)
    server = vault_env.acquirer.server
    normal = server.settings
    server.settings = dataclasses.replace(
        normal,
        faults={"0400": MessageFault(Fault.NO_ANSWER), "0401": MessageFault(Fault.NO_ANSWER)},
    )
    try:
        body = _authorize(vault_env, merchant, pm).json()
        assert (body["status"], body["fault"]) == ("reversal_pending", "timeout")
        assert followups.retry_pending_reversals(vault_env.runtime) == 0  # still unanswered
    finally:
        server.settings = normal
    assert followups.retry_pending_reversals(vault_env.runtime) >= 1
    with vault_env.api() as api:
        stored = api.get(
            f"/internal/v1/authorizations/{body['id']}", params={"merchant_id": merchant}
        ).json()
    assert stored["status"] == "reversed"
    view = vault_env.acquirer.issuer.authorization("BASTIONPAY     ", body["network"]["rrn"])
    assert view is not None and view.held == 0  # the money that was held is released


def test_test_cards_are_real_vault_records(vault_env: VaultEnv) -> None:
    merchant = new_merchant()
    with vault_env.api() as api:
        visa = api.post(
            "/internal/v1/test_cards", json={"merchant_id": merchant, "test_card": "pm_card_visa"}
        )
        declined = api.post(
            "/internal/v1/test_cards",
            json={"merchant_id": merchant, "test_card": "pm_card_chargeDeclined"},
        )
        unknown = api.post(
            "/internal/v1/test_cards", json={"merchant_id": merchant, "test_card": "pm_card_nope"}
        )
    assert visa.status_code == 200 and visa.json()["id"].startswith("pm_")
    assert visa.json()["card"]["last4"] == "4242" and visa.json()["livemode"] is False
    assert unknown.status_code == 400
    assert _authorize(vault_env, merchant, visa.json()["id"]).json()["status"] == "approved"
    refused = _authorize(vault_env, merchant, declined.json()["id"]).json()
    assert refused["decline"]["decline_code"] == "generic_decline"


def test_another_merchant_s_card_is_not_found_and_the_attempt_is_audited(
    vault_env: VaultEnv,
) -> None:
    owner, intruder = new_merchant(), new_merchant()
    pm = _card(vault_env, owner, "4242424242424242")
    response = _authorize(vault_env, intruder, pm)
    assert response.status_code == 404
    live = _authorize(vault_env, owner, pm, livemode=True)  # a test card, a live payment
    assert live.status_code == 404
    with vault_env.api() as api:
        metadata = api.get(f"/internal/v1/payment_methods/{pm}", params={"merchant_id": intruder})
    assert metadata.status_code == 404
    denials = [
        details
        for action, outcome, details in vault_env.audit_actions()
        if action == "vault.access.deny" and outcome == "denied"
    ]
    assert {"reason": "merchant_mismatch"} in denials
    assert {"reason": "mode_mismatch"} in denials
    assert _cvc_rows(vault_env, pm) != []  # nothing was consumed by the refused attempt


def test_an_unused_cvc_is_purged_after_ten_minutes(vault_env: VaultEnv) -> None:
    merchant = new_merchant()
    pm = _card(vault_env, merchant, "6011111111111117")
    vault_env.clock.advance(599)
    assert payments.purge_expired_cvcs(vault_env.runtime) == 0
    assert _cvc_rows(vault_env, pm) != []
    vault_env.clock.advance(1)
    assert payments.purge_expired_cvcs(vault_env.runtime) >= 1
    assert _cvc_rows(vault_env, pm) == []
    purged = [d for a, _, d in vault_env.audit_actions() if a == "vault.cvc.delete"]
    assert any(pm in details["cards"] for details in purged)
    # The card itself stays usable; it is authorized without a CVC.
    approved = _authorize(vault_env, merchant, pm).json()
    assert approved["status"] == "approved"
    assert approved["cvc_check"] != "pass"  # no CVC was sent: the issuer could not check one


# --- Scans (C1, C3, C5) --------------------------------------------------------------------------

MASKED_PAN = re.compile(r"\d{6}\*{3,9}\d{4}")
HEX = frozenset("0123456789abcdef")
# Columns holding HMACs and hashes (fingerprints, key hashes, chain links, signatures): checked by
# format, not by the PAN search — now and then a 16-hex fingerprint is all decimal digits and
# Luhn-valid, and a digest is not a card number.
DIGEST_COLUMNS = frozenset(
    {"fingerprint", "platform_fingerprint", "key_hash", "leaf_hash", "chain_hash", "root_hash"}
    | {"mac", "signature"}
)


def clear_pans(text: str, digests: frozenset[str] = frozenset()) -> list[str]:
    """`find_pans`, minus matches inside one of the stored `digests` (raw file scans)."""
    found = []
    for match in find_pans(text):
        start, end = match.start, match.end
        while start > 0 and text[start - 1] in HEX:
            start -= 1
        while end < len(text) and text[end] in HEX:
            end += 1
        if text[start:end] not in digests:
            found.append(match.masked)
    return found


def _dump_vault_database(env: VaultEnv) -> tuple[list[str], frozenset[str]]:
    """Every text and blob value of every vault table, as text (blobs decoded byte for byte), and
    apart from them the values of the digest columns."""
    values: list[str] = []
    digests: set[str] = set()
    with env.runtime.db.engine.connect() as conn:
        for table in vault_metadata.sorted_tables:
            columns = [
                column.name
                for column in table.columns
                if isinstance(column.type, String | Text | LargeBinary)
                or column.name in ("details", "acquirer_ref")
            ]
            if not columns:
                continue
            query = text(f"SELECT {', '.join(columns)} FROM {table.name}")  # noqa: S608
            for row in conn.execute(query):
                for name, value in zip(columns, row, strict=True):
                    if isinstance(value, bytes | memoryview):
                        values.append(bytes(value).decode("latin-1"))
                    elif name in DIGEST_COLUMNS and value is not None:
                        digests.add(str(value))
                    elif value is not None:
                        values.append(str(value))
    return values, frozenset(digests)


def test_the_vault_database_holds_no_clear_card_number(vault_env: VaultEnv) -> None:
    merchant = new_merchant()
    for number in ("4242424242424242", "5555555555554444", "4000000000000002"):
        _authorize(vault_env, merchant, _card(vault_env, merchant, number))
    vault_env.server.worker.flush()
    dump, digests = _dump_vault_database(vault_env)
    assert any(value == "4242" for value in dump)  # last4 is there: the scan sees real rows
    assert [hit for value in dump for hit in find_pans(value)] == []
    assert digests and all(set(value) <= HEX and len(value) >= 16 for value in digests)
    # Raw files too (SQLite): no card number in the database file or its WAL.
    raw = b"".join(
        path.read_bytes() for path in Path(vault_env.data_dir).glob("vault.db*") if path.is_file()
    ).decode("latin-1")
    assert clear_pans(raw, digests) == []
    assert clear_pans("x 4242424242424242 y", digests) == ["424242******4242"]  # it does look


def test_no_cvc_survives_authorization_anywhere_in_the_database(vault_env: VaultEnv) -> None:
    merchant = new_merchant()
    pm = _card(vault_env, merchant, "4000056655665556")
    _authorize(vault_env, merchant, pm)
    with vault_env.runtime.db.engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM vault_cvcs WHERE card_id = :c"), {"c": pm})
        assert left.scalar_one() == 0


def test_the_logs_hold_no_card_number_and_no_cvc(vault_env: VaultEnv) -> None:
    merchant = new_merchant()
    for number in ("4242424242424242", TIMEOUT_CARD, "4000000000009995"):
        _authorize(vault_env, merchant, _card(vault_env, merchant, number))
    tokenize(vault_env, register_key(vault_env, merchant), "4242424242424241", cvc=CVC)
    logs = vault_env.logs.getvalue()
    assert "vault_card_created" in logs and "vault_authorization" in logs  # logs were captured
    assert find_pans(logs) == []
    assert MASKED_PAN.search(logs) is None  # not even a masked one: nothing tried to log a PAN
    assert "card[number]" not in logs and "card[cvc]" not in logs  # no request body logged
    assert f"cvc={CVC}" not in logs and f'"cvc": "{CVC}"' not in logs
