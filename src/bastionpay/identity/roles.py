"""Roles and the permissions they grant (SECURITY-REQUIREMENTS I5; docs/identity.md).

Merchant roles act on their own merchant only; platform roles act across merchants (a request
names the merchant with `Stripe-Account`), each with the least privilege its job needs.
"""

from __future__ import annotations

from typing import Final, Literal

from bastionpay.merchants import permissions as p

MerchantRole = Literal["owner", "admin", "developer", "analyst", "support_readonly"]
PlatformRole = Literal["platform_admin", "risk_analyst", "security_officer", "compliance_auditor"]
Role = MerchantRole | PlatformRole

MERCHANT_ROLES: Final[tuple[MerchantRole, ...]] = (
    "owner",
    "admin",
    "developer",
    "analyst",
    "support_readonly",
)
PLATFORM_ROLES: Final[tuple[PlatformRole, ...]] = (
    "platform_admin",
    "risk_analyst",
    "security_officer",
    "compliance_auditor",
)
ALL_ROLES: Final = (*MERCHANT_ROLES, *PLATFORM_ROLES)

_READS: Final = frozenset(
    {p.PAYMENTS_READ, p.CUSTOMERS_READ, p.BALANCE_READ, p.RISK_READ, p.DISPUTES_READ},
)

ROLE_PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    # The account holder: everything on the merchant.
    "owner": p.MERCHANT_PERMISSIONS | p.MERCHANT_ADMIN_PERMISSIONS,
    # Everything but the audit log's independence from the people it records (separation of
    # duties: PCI DSS 10.3.1 limits audit-log access to those with a job-related need).
    "admin": (p.MERCHANT_PERMISSIONS - {p.AUDIT_READ}) | p.MERCHANT_ADMIN_PERMISSIONS,
    # Integrates: payments and customers, keys and apps; not staff, not reviews, not refunds.
    "developer": _READS
    | {p.PAYMENTS_WRITE, p.CUSTOMERS_WRITE, p.KEYS_MANAGE, p.APPS_MANAGE, p.RISK_WRITE},
    # Reads and decides reviews, and answers disputes (risk work: evidence, accepting a loss).
    "analyst": _READS | {p.RISK_REVIEW, p.DISPUTES_WRITE},
    # Support sees a customer's dispute to answer the customer; it changes nothing.
    "support_readonly": frozenset({p.PAYMENTS_READ, p.CUSTOMERS_READ, p.DISPUTES_READ}),
    # Platform operators.
    "platform_admin": frozenset({p.PLATFORM_USERS, *_READS}),
    "risk_analyst": _READS | {p.RISK_REVIEW, p.RISK_WRITE},
    "security_officer": frozenset({p.AUDIT_READ, p.VAULT_KEYS, p.PAYMENTS_READ}),
    "compliance_auditor": frozenset(
        {p.AUDIT_READ, p.PAYMENTS_READ, p.BALANCE_READ, p.DISPUTES_READ}
    ),
}


def is_platform_role(role: str) -> bool:
    return role in PLATFORM_ROLES


def permissions_for(role: str) -> frozenset[str]:
    """The permissions of `role`; an unknown role grants nothing (fail closed, P3)."""
    return ROLE_PERMISSIONS.get(role, frozenset())
