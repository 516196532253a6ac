"""Routes: key management in the card vault, for operators (SECURITY-REQUIREMENTS C4, I3, I5).

`GET /v1/vault/keys`, `POST /v1/vault/keys/rotate`, `POST /v1/vault/keys/retire` need `vault:keys`
(platform role `security_officer`), and rotating or retiring needs a fresh second factor (step-up).
The api checks both, then asks the vault over mutual TLS (T2), naming the operator; the vault
records the operation in its own audit log under that operator's id, and the api records it in
its log too. No merchant account is involved: these are platform-wide routes.

On the vault host, `bastionpay vault keys …` remains the break-glass path (host access to the
cardholder-data environment is the control there; it is audited with the OS user).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bastionpay.api.params import FormBool, FormInt, FormStr, Params
from bastionpay.api.routing import Call, Endpoint, Result, always
from bastionpay.kernel.errors import InvalidRequestError, ServiceUnavailable
from bastionpay.merchants import permissions as perm
from bastionpay.payments.vault_connector import VaultClient, VaultError, card_vault


class KeyStatus(Params):
    merchant: FormStr | None = Field(default=None, max_length=64)


class Rotate(Params):
    kind: Literal["kek", "dek"]
    merchant: FormStr | None = Field(default=None, max_length=64)
    # Rewrap (KEK) or re-encrypt (DEK) everything under the new version now; else the worker does.
    complete: FormBool = True


class Retire(Params):
    kek_version: FormInt | None = Field(default=None, ge=1)
    merchant: FormStr | None = Field(default=None, max_length=64)


def _vault(call: Call) -> VaultClient:
    vault = card_vault(call.ctx.connector)
    if vault is None:
        raise ServiceUnavailable(
            "No card vault is configured for this api (sandbox mode).", code="vault_unavailable"
        )
    return vault


def _ask(vault: VaultClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    try:
        # Not retried blindly: a rotation that timed out may have happened (status tells).
        return vault.call(method, path, retry=False, pooled=False, **kwargs)
    except VaultError as exc:
        message = str(exc.error.get("message") or "The vault refused the key operation.")
        raise InvalidRequestError(message[:300], code=exc.code or "key_operation_refused") from None


def _result(kind: str, payload: dict[str, Any]) -> Result:
    # `object` and `id` name the target in the api's audit record (pipeline `_action_event`).
    return Result({"object": "vault.key_operation", "id": kind, "result": payload})


def key_status(call: Call) -> Result:
    p: KeyStatus = call.params
    params = {"operator": call.caller.key_id}
    if p.merchant is not None:
        params["merchant_id"] = p.merchant
    return Result(_ask(_vault(call), "GET", "/keys/status", params=params))


def rotate(call: Call) -> Result:
    p: Rotate = call.params
    if (p.kind == "dek") != (p.merchant is not None):
        raise InvalidRequestError(
            "A data-key rotation names its merchant; a KEK rotation does not.", param="merchant"
        )
    body: dict[str, Any] = {"operator": call.caller.key_id, "kind": p.kind, "complete": p.complete}
    if p.merchant is not None:
        body["merchant_id"] = p.merchant
    return _result(f"rotate_{p.kind}", _ask(_vault(call), "POST", "/keys/rotate", body=body))


def retire(call: Call) -> Result:
    p: Retire = call.params
    if (p.kek_version is None) == (p.merchant is None):
        raise InvalidRequestError(
            "Give exactly one of kek_version or merchant.", param="kek_version"
        )
    body: dict[str, Any] = {"operator": call.caller.key_id}
    if p.kek_version is not None:
        body["kek_version"] = p.kek_version
    else:
        body["merchant_id"] = p.merchant
    return _result("retire", _ask(_vault(call), "POST", "/keys/retire", body=body))


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/vault/keys",
        perm.VAULT_KEYS,
        KeyStatus,
        key_status,
        audit_action="vault.keys.status",
        platform=True,
    ),
    Endpoint(
        "POST",
        "/v1/vault/keys/rotate",
        perm.VAULT_KEYS,
        Rotate,
        rotate,
        audit_action="vault.keys.rotate",
        step_up=always,
        platform=True,
    ),
    Endpoint(
        "POST",
        "/v1/vault/keys/retire",
        perm.VAULT_KEYS,
        Retire,
        retire,
        audit_action="vault.keys.retire",
        step_up=always,
        platform=True,
    ),
]
