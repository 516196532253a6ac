"""Permissions: one vocabulary for API keys, operator roles and OAuth scopes (I5).

Every route declares one. A secret key holds every *merchant* permission, a restricted key (`rk_`)
a listed subset, a publishable key none of the server-side API (I7). Operators get theirs from
their role (`bastionpay.identity.roles`), third-party apps from the scopes a user consented to
(`bastionpay.oauth`) — always intersected with what the consenting user's role allows.
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
# Disputes (chargebacks): reading them, and answering them (evidence, submit, accept).
DISPUTES_READ: Final = "disputes:read"
DISPUTES_WRITE: Final = "disputes:write"
# Identity (issue 5): API keys, the merchant's staff, third-party apps.
KEYS_MANAGE: Final = "keys:manage"
USERS_MANAGE: Final = "users:manage"
APPS_MANAGE: Final = "apps:manage"  # register and revoke OAuth clients
# Platform-only: never held by a merchant's key, user or app.
VAULT_KEYS: Final = "vault:keys"  # key rotation and retirement in the vault (C4)
PLATFORM_USERS: Final = "platform:users"  # operators of any merchant and of the platform

MERCHANT_PERMISSIONS: Final = frozenset(
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
        DISPUTES_READ,
        DISPUTES_WRITE,
    }
)
# What a secret key holds: every merchant API permission, but not the identity administration a
# human with MFA must do (keys, staff, apps) — a leaked key must not mint more keys (I7).
ALL_PERMISSIONS: Final = MERCHANT_PERMISSIONS
MERCHANT_ADMIN_PERMISSIONS: Final = frozenset({KEYS_MANAGE, USERS_MANAGE, APPS_MANAGE})
PLATFORM_PERMISSIONS: Final = frozenset({VAULT_KEYS, PLATFORM_USERS})
EVERY_PERMISSION: Final = MERCHANT_PERMISSIONS | MERCHANT_ADMIN_PERMISSIONS | PLATFORM_PERMISSIONS
