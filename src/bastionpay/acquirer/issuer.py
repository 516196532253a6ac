"""The simulated issuer: answers and per-authorization state (issue 4, items 5 and 6).

An authorization is keyed by (card acceptor id, RRN) — the RRN is derived from the caller's
idempotency reference, so the key identifies one payment attempt across retries. State per key:
authorized amount, completion (captured) amount, refunded amount, reversed or not. The rules:

- **authorization** — a repeat of a known key with the same card, amount and currency is answered
  with the first answer (same approval code; nothing is authorized twice); with different content
  it is declined `94`. A key that was reversed before its authorization arrived is declined `12`
  and recorded as reversed: a late original never holds money. That is what makes "timeouts never
  double-charge" true whichever of the `0100` and the `0400` wins the race.
- **completion** (capture) — once per authorization, for at most the authorized amount (`13`
  otherwise); the rest is released. A repeat with the same amount gets the first answer; with
  another amount `12`. Unknown key `25`; reversed or declined authorization `12`.
- **reversal** (void, timeout) — idempotent and always acknowledged `00`, except after a completion
  (`12`: refund instead). An unknown key is remembered as reversed-before-seen. Reversals are for
  the full amount; partial reversals are not simulated.
- **refund** — only of a completed authorization (`12` otherwise), at most the captured amount minus
  what was refunded (`13`); each refund has its own reference, and a repeat is answered with the
  first answer (`94` if its amount differs).

Data minimisation: a record keeps the card's last 4 digits and a keyed hash of the number (HMAC-
SHA-256 under a per-process random key, C3) — never the number, never the CVC (C1). State lives in
memory and is bounded (`max_records`, oldest dropped first); it is a test double, not a ledger.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from bastionpay.acquirer import authentication, testcards
from bastionpay.acquirer.codes import APPROVED
from bastionpay.acquirer.spec import CVC_MATCH, CVC_NO_MATCH, CVC_NOT_PROCESSED
from bastionpay.kernel.clock import Clock, SystemClock
from bastionpay.kernel.pan import luhn_valid

NOT_ALLOWED: Final = "12"
INVALID_AMOUNT: Final = "13"
INVALID_CARD: Final = "14"
AUTHENTICATION_REQUIRED: Final = "1A"
NOT_FOUND: Final = "25"
EXPIRED: Final = "54"
CVC_MISMATCH: Final = "N7"
DUPLICATE_CONFLICT: Final = "94"
DEFAULT_MAX_RECORDS: Final = 100_000
_APPROVAL_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

Key = tuple[str, str]  # (card acceptor id, RRN)


@dataclass(frozen=True, slots=True)
class AuthorizationInput:
    """What the issuer reads from a `0100`. The PAN and CVC are kept out of `repr` (L3)."""

    card_acceptor_id: str
    rrn: str
    stan: str
    amount: int
    currency: str  # ISO 4217 numeric
    expiry: str  # YYMM
    pan: str = field(repr=False)
    cvc: str | None = field(default=None, repr=False)
    eci: str | None = None
    cryptogram: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Answer:
    response_code: str
    approval_code: str | None = None
    cvc_result: str | None = None
    duplicate: bool = False

    @property
    def approved(self) -> bool:
        return self.response_code == APPROVED


@dataclass(frozen=True, slots=True)
class RefundView:
    reference: str
    amount: int
    response_code: str
    approval_code: str | None


@dataclass(frozen=True, slots=True)
class AuthorizationView:
    """A snapshot of one authorization, for tests and operators. No card data but the last 4."""

    card_acceptor_id: str
    rrn: str
    stan: str
    last4: str
    amount: int
    currency: str
    response_code: str
    approval_code: str | None
    reversed: bool
    late: bool  # arrived after its reversal, so declined
    captured: int
    refunded: int
    duplicates: int
    refunds: tuple[RefundView, ...]

    @property
    def approved(self) -> bool:
        return self.response_code == APPROVED

    @property
    def held(self) -> int:
        """Money the authorization still blocks: approved, not reversed, not captured."""
        if not self.approved or self.reversed or self.completed:
            return 0
        return self.amount

    @property
    def completed(self) -> bool:
        return self.captured > 0

    @property
    def charged(self) -> int:
        """Money taken from the card and not given back."""
        return self.captured - self.refunded


@dataclass(slots=True)
class _Refund:
    amount: int
    answer: Answer


@dataclass(slots=True)
class _Authorization:
    card_acceptor_id: str
    rrn: str
    stan: str
    last4: str
    fingerprint: bytes
    amount: int
    currency: str
    answer: Answer
    reversed: bool = False
    late: bool = False
    completion: Answer | None = None
    captured: int = 0
    refunded: int = 0
    duplicates: int = 0
    refunds: dict[str, _Refund] = field(default_factory=dict)

    def view(self) -> AuthorizationView:
        return AuthorizationView(
            card_acceptor_id=self.card_acceptor_id,
            rrn=self.rrn,
            stan=self.stan,
            last4=self.last4,
            amount=self.amount,
            currency=self.currency,
            response_code=self.answer.response_code,
            approval_code=self.answer.approval_code,
            reversed=self.reversed,
            late=self.late,
            captured=self.captured,
            refunded=self.refunded,
            duplicates=self.duplicates,
            refunds=tuple(
                RefundView(reference, refund.amount, refund.answer.response_code,
                           refund.answer.approval_code)
                for reference, refund in self.refunds.items()
            ),
        )  # fmt: skip


class Issuer:
    """Thread-safe: the server calls it from its event loop, tests read it from their thread."""

    def __init__(
        self, *, clock: Clock | None = None, max_records: int = DEFAULT_MAX_RECORDS
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be positive")
        self._clock = clock or SystemClock()
        self._max_records = max_records
        self._lock = threading.Lock()
        self._records: OrderedDict[Key, _Authorization] = OrderedDict()
        self._reversed_unseen: OrderedDict[Key, None] = OrderedDict()
        # Keyed hash of card numbers (C3): equality for duplicate detection, nothing else.
        self._fingerprint_key = secrets.token_bytes(32)

    # --- Authorization ----------------------------------------------------------------------------

    def authorize(self, request: AuthorizationInput) -> Answer:
        key = (request.card_acceptor_id, request.rrn)
        fingerprint = hmac.new(self._fingerprint_key, request.pan.encode(), hashlib.sha256).digest()
        with self._lock:
            existing = self._records.get(key)
            if existing is not None:
                return self._repeat(existing, request, fingerprint)
            late = key in self._reversed_unseen
            if late:
                del self._reversed_unseen[key]
                answer = Answer(NOT_ALLOWED)
            else:
                answer = self._decide(request)
            self._store(
                _Authorization(
                    card_acceptor_id=request.card_acceptor_id,
                    rrn=request.rrn,
                    stan=request.stan,
                    last4=request.pan[-4:],
                    fingerprint=fingerprint,
                    amount=request.amount,
                    currency=request.currency,
                    answer=answer,
                    reversed=late,
                    late=late,
                )
            )
            return answer

    def _repeat(
        self, record: _Authorization, request: AuthorizationInput, fingerprint: bytes
    ) -> Answer:
        same = (
            hmac.compare_digest(record.fingerprint, fingerprint)
            and record.amount == request.amount
            and record.currency == request.currency
        )
        if not same:
            return Answer(DUPLICATE_CONFLICT)
        record.duplicates += 1
        if record.reversed:
            # The reference is spent: answering the old approval would claim money is held.
            return Answer(NOT_ALLOWED, duplicate=True)
        original = record.answer
        return Answer(original.response_code, original.approval_code, original.cvc_result, True)

    def _decide(self, request: AuthorizationInput) -> Answer:
        pan = request.pan
        if not luhn_valid(pan):
            return Answer(INVALID_CARD)
        if self._expired(request.expiry):
            return Answer(EXPIRED)
        declined = testcards.DECLINES.get(pan)
        if declined is not None:
            return Answer(declined)
        after_authentication = testcards.AUTHENTICATION_REQUIRED.get(pan)
        if after_authentication is not None:
            # A fully authenticated result with a well-formed authentication value (issue 4,
            # item 7); anything less is a soft decline, as issuers answer under PSD2 SCA.
            authenticated = request.eci in testcards.FULLY_AUTHENTICATED_ECI and (
                authentication.well_formed(request.eci, request.cryptogram)
            )
            if not authenticated:
                return Answer(AUTHENTICATION_REQUIRED)
            if after_authentication != APPROVED:
                return Answer(after_authentication)
        cvc_result = self._cvc_result(pan, request.cvc)
        if cvc_result == CVC_NO_MATCH and pan not in testcards.CVC_CHECK_FAIL:
            return Answer(CVC_MISMATCH, cvc_result=cvc_result)
        return Answer(APPROVED, self._new_approval_code(), cvc_result)

    def _expired(self, expiry: str) -> bool:
        year, month = 2000 + int(expiry[:2]), int(expiry[2:])
        if not 1 <= month <= 12:
            return True
        today = dt.datetime.fromtimestamp(self._clock.now(), dt.UTC)
        return (year, month) < (today.year, today.month)

    @staticmethod
    def _cvc_result(pan: str, cvc: str | None) -> str:
        if cvc is None:
            return CVC_NOT_PROCESSED
        if pan in testcards.CVC_CHECK_FAIL:
            return CVC_NO_MATCH
        expected_length = 4 if pan[:2] in {"34", "37"} else 3  # Amex CIDs have 4 digits
        return CVC_MATCH if len(cvc) == expected_length else CVC_NO_MATCH

    def _new_approval_code(self) -> str:
        return "".join(secrets.choice(_APPROVAL_ALPHABET) for _ in range(6))

    def _store(self, record: _Authorization) -> None:
        self._records[(record.card_acceptor_id, record.rrn)] = record
        while len(self._records) > self._max_records:
            self._records.popitem(last=False)

    # --- Follow-ups -------------------------------------------------------------------------------

    def complete(
        self,
        card_acceptor_id: str,
        rrn: str,
        *,
        amount: int,
        currency: str,
        approval_code: str | None = None,
    ) -> Answer:
        with self._lock:
            record = self._records.get((card_acceptor_id, rrn))
            if record is None or (
                approval_code is not None and approval_code != record.answer.approval_code
            ):
                return Answer(NOT_FOUND)
            if record.completion is not None:
                if record.captured == amount and record.currency == currency:
                    first = record.completion
                    return Answer(first.response_code, first.approval_code, duplicate=True)
                return Answer(NOT_ALLOWED)
            if record.reversed or not record.answer.approved:
                return Answer(NOT_ALLOWED)
            if currency != record.currency or not 0 < amount <= record.amount:
                return Answer(INVALID_AMOUNT)
            record.captured = amount
            record.completion = Answer(APPROVED, record.answer.approval_code)
            return record.completion

    def reverse(self, card_acceptor_id: str, rrn: str, *, amount: int, currency: str) -> Answer:
        key = (card_acceptor_id, rrn)
        with self._lock:
            record = self._records.get(key)
            if record is None:
                # The original has not arrived (or never will): remember, so it is declined if it
                # does. Acknowledged, so the sender stops repeating the reversal.
                self._reversed_unseen[key] = None
                while len(self._reversed_unseen) > self._max_records:
                    self._reversed_unseen.popitem(last=False)
                return Answer(APPROVED)
            if record.completion is not None:
                return Answer(NOT_ALLOWED)
            if record.reversed:
                return Answer(APPROVED, duplicate=True)
            if record.answer.approved and (amount != record.amount or currency != record.currency):
                return Answer(INVALID_AMOUNT)  # partial reversals are not simulated
            record.reversed = True
            return Answer(APPROVED)

    def refund(
        self, card_acceptor_id: str, rrn: str, *, reference: str, amount: int, currency: str
    ) -> Answer:
        with self._lock:
            record = self._records.get((card_acceptor_id, rrn))
            if record is None:
                return Answer(NOT_FOUND)
            previous = record.refunds.get(reference)
            if previous is not None:
                if previous.amount != amount:
                    return Answer(DUPLICATE_CONFLICT)
                first = previous.answer
                return Answer(first.response_code, first.approval_code, duplicate=True)
            if record.completion is None:
                return Answer(NOT_ALLOWED)
            if currency != record.currency or not 0 < amount <= record.captured - record.refunded:
                return Answer(INVALID_AMOUNT)
            record.refunded += amount
            answer = Answer(APPROVED, self._new_approval_code())
            record.refunds[reference] = _Refund(amount, answer)
            return answer

    # --- Views ------------------------------------------------------------------------------------

    def authorization(self, card_acceptor_id: str, rrn: str) -> AuthorizationView | None:
        with self._lock:
            record = self._records.get((card_acceptor_id, rrn))
            return record.view() if record is not None else None

    def authorizations(self) -> list[AuthorizationView]:
        with self._lock:
            return [record.view() for record in self._records.values()]

    def reversed_before_seen(self, card_acceptor_id: str, rrn: str) -> bool:
        with self._lock:
            return (card_acceptor_id, rrn) in self._reversed_unseen
