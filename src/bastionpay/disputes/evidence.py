"""Dispute evidence: a bounded, text-only subset of Stripe's evidence hash.

Stripe's evidence also has file fields (receipts, shipping documentation …); BastionPay has no
file store, so those render as null and cannot be set. Each text field is limited to
`MAX_FIELD_LENGTH` characters (T4: bounded input), and, as every text parameter, refuses control
characters and card numbers (C5: a card number typed into evidence would land outside the vault).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import Field

from bastionpay.api.params import FormStr, Params

FILE_FIELDS: Final = (
    "cancellation_policy",
    "customer_communication",
    "customer_signature",
    "duplicate_charge_documentation",
    "receipt",
    "refund_policy",
    "service_documentation",
    "shipping_documentation",
    "uncategorized_file",
)
MAX_FIELD_LENGTH: Final = 5000
EvidenceText = Annotated[FormStr, Field(max_length=MAX_FIELD_LENGTH)]


class Evidence(Params):
    """The text fields of Stripe's evidence hash: the one list of them (`TEXT_FIELDS`)."""

    access_activity_log: EvidenceText | None = None
    billing_address: EvidenceText | None = None
    cancellation_policy_disclosure: EvidenceText | None = None
    cancellation_rebuttal: EvidenceText | None = None
    customer_email_address: EvidenceText | None = None
    customer_name: EvidenceText | None = None
    customer_purchase_ip: EvidenceText | None = None
    duplicate_charge_explanation: EvidenceText | None = None
    duplicate_charge_id: EvidenceText | None = None
    product_description: EvidenceText | None = None
    refund_policy_disclosure: EvidenceText | None = None
    refund_refusal_explanation: EvidenceText | None = None
    service_date: EvidenceText | None = None
    shipping_address: EvidenceText | None = None
    shipping_carrier: EvidenceText | None = None
    shipping_date: EvidenceText | None = None
    shipping_tracking_number: EvidenceText | None = None
    uncategorized_text: EvidenceText | None = None


TEXT_FIELDS: Final = tuple(Evidence.model_fields)

# Stripe's test-mode magic values for `uncategorized_text`: submitting them decides the dispute
# at once, as the simulated network would after its review.
WINNING: Final = "winning_evidence"
LOSING: Final = "losing_evidence"


def merge(current: dict[str, str], update: dict[str, str]) -> dict[str, str]:
    """Stripe's update semantics: a field set to "" is cleared; others are replaced."""
    merged = dict(current)
    for name, value in update.items():
        if value == "":
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def render(stored: dict[str, str]) -> dict[str, Any]:
    return {
        **{name: stored.get(name) for name in TEXT_FIELDS},
        **dict.fromkeys(FILE_FIELDS),
        "enhanced_evidence": {},
    }
