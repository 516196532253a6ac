"""What a payments operation needs besides the session: who, when, pricing and the processor."""

from __future__ import annotations

from dataclasses import dataclass

from bastionpay.crypto.keyed_hash import KeyedHasher
from bastionpay.payments.interfaces import ProcessorConnector


@dataclass(frozen=True)
class Pricing:
    basis_points: int
    fixed: int
    availability_delay_seconds: int


@dataclass(frozen=True)
class PaymentContext:
    merchant_id: str
    livemode: bool
    now: int
    connector: ProcessorConnector
    pricing: Pricing
    fingerprints: KeyedHasher
