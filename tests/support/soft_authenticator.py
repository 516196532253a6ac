"""A software WebAuthn authenticator, so registration and login run through the real `webauthn`
verification (issue 5 "Done when": WebAuthn registration and login, with a software authenticator).

It does what a security key does, with the same encodings (W3C WebAuthn Level 2 §6): an ES256 key
pair (`cryptography`), `clientDataJSON`, `authenticatorData` (RP id hash, flags UP/UV/AT, the
signature counter, attested credential data with a COSE_Key encoded by `cbor2`), a `none`
attestation object, and assertion signatures over `authenticatorData || SHA-256(clientDataJSON)`.
Knobs let a test lie about the origin, the RP id, the counter or the signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP = 0x01  # user present
FLAG_UV = 0x04  # user verified
FLAG_AT = 0x40  # attested credential data included
# COSE (RFC 9053): kty EC2 = 2, alg ES256 = -7, crv P-256 = 1.
_COSE_KTY, _COSE_ALG, _COSE_CRV, _COSE_X, _COSE_Y = 1, 3, -1, -2, -3


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    """One credential on one authenticator. `counts=False` behaves like authenticators (most
    passkeys) that keep no signature counter and always report 0."""

    origin: str
    rp_id: str
    counts: bool = True
    sign_count: int = 0
    user_verified: bool = True
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    user_handle: bytes | None = None
    _key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()), repr=False
    )

    # -- registration (navigator.credentials.create) ---------------------------------------------
    def register(
        self,
        options_json: str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
    ) -> str:
        """Answer creation options with a credential JSON, as a browser would send it."""
        options = json.loads(options_json)
        self.user_handle = b64url_decode(options["user"]["id"])
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        auth_data = self._auth_data(rp_id or options["rp"]["id"], attested=True)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation),
                    "transports": ["usb"],
                },
            }
        )

    # -- authentication (navigator.credentials.get) ----------------------------------------------
    def assertion(
        self,
        options_json: str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        sign_count: int | None = None,
        tamper_signature: bool = False,
        user_handle: bytes | None = None,
    ) -> str:
        """Answer request options with an assertion JSON; `sign_count` forces the counter."""
        options = json.loads(options_json)
        if sign_count is not None:
            self.sign_count = sign_count
        elif self.counts:
            self.sign_count += 1
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = self._auth_data(rp_id or options["rpId"], attested=False)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self._key.sign(signed, ec.ECDSA(hashes.SHA256()))
        if tamper_signature:
            # Flip one bit of the DER body: still parseable, no longer valid.
            signature = signature[:-1] + bytes([signature[-1] ^ 0x01])
        handle = user_handle if user_handle is not None else self.user_handle
        response: dict[str, Any] = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        if handle is not None:
            response["userHandle"] = b64url(handle)
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": response,
            }
        )

    # -- encodings --------------------------------------------------------------------------------
    def _client_data(self, kind: str, challenge_b64: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge_b64,
                "origin": origin or self.origin,
                "crossOrigin": False,
            },
            separators=(",", ":"),
        ).encode()

    def _auth_data(self, rp_id: str, *, attested: bool) -> bytes:
        flags = FLAG_UP | (FLAG_UV if self.user_verified else 0) | (FLAG_AT if attested else 0)
        data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([flags])
            + self.sign_count.to_bytes(4, "big")
        )
        if attested:
            data += (
                bytes(16)  # AAGUID: all zeros, as "none" attestation authenticators send
                + len(self.credential_id).to_bytes(2, "big")
                + self.credential_id
                + self.cose_public_key()
            )
        return data

    def cose_public_key(self) -> bytes:
        numbers = self._key.public_key().public_numbers()
        return cbor2.dumps(
            {
                _COSE_KTY: 2,
                _COSE_ALG: -7,
                _COSE_CRV: 1,
                _COSE_X: numbers.x.to_bytes(32, "big"),
                _COSE_Y: numbers.y.to_bytes(32, "big"),
            }
        )
