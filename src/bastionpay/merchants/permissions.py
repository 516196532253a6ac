"""Permissions granted to API keys (and, with the identity issue, to roles and OAuth scopes).

Every route declares one; a secret key holds all of them, a restricted key (`rk_`) a listed subset,
a publishable key none of the server-side API (SECURITY-REQUIREMENTS I5, I7).
"""

from __future__ import annotations

from typing import Final

PAYMENTS_READ: Final = "payments:read"
PAYMENTS_WRITE: Final = "payments:write"
REFUNDS_WRITE: Final = "refunds:write"
CUSTOMERS_READ: Final = "customers:read"
CUSTOMERS_WRITE: Final = "customers:write"
BALANCE_READ: Final = "balance:read"
AUDIT_READ: Final = "audit:read"
RISK_READ: Final = "risk:read"  # reviews, rules, lists (issue 7)
RISK_REVIEW: Final = "risk:review"  # approve and reject reviews
RISK_WRITE: Final = "risk:write"  # rules and lists

ALL_PERMISSIONS: Final = frozenset(
    {
        PAYMENTS_READ,
        PAYMENTS_WRITE,
        REFUNDS_WRITE,
        CUSTOMERS_READ,
        CUSTOMERS_WRITE,
        BALANCE_READ,
        AUDIT_READ,
        RISK_READ,
        RISK_REVIEW,
        RISK_WRITE,
    }
)
