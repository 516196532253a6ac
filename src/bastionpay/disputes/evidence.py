"""Dispute evidence: a bounded, text-only subset of Stripe's evidence hash.

Stripe's evidence also has file fields (receipts, shipping documentation …); BastionPay has no
file store, so those render as null and cannot be set. Each text field is limited to
`MAX_FIELD_LENGTH` characters (T4: bounded input), and, as every text parameter, refuses control
characters and card numbers (C5: a card number typed into evidence would land outside the vault).
"""

from __future__ import annotations

from typing import Any, Final

TEXT_FIELDS: Final = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_tracking_number",
    "uncategorized_text",
)
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
