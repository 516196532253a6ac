"""Every table of the api database, imported in one place for migrations and tests."""

from __future__ import annotations

from bastionpay.audit import models as audit_models
from bastionpay.customers import models as customers_models
from bastionpay.db.base import Base
from bastionpay.disputes import models as disputes_models
from bastionpay.idempotency import models as idempotency_models
from bastionpay.identity import models as identity_models
from bastionpay.ledger import models as ledger_models
from bastionpay.merchants import models as merchants_models
from bastionpay.oauth import models as oauth_models
from bastionpay.payments import models as payments_models
from bastionpay.risk import models as risk_models

metadata = Base.metadata
MODEL_MODULES = (
    audit_models,
    customers_models,
    disputes_models,
    idempotency_models,
    identity_models,
    ledger_models,
    merchants_models,
    oauth_models,
    payments_models,
    risk_models,
)
