"""The documented transaction simulator (issue 7, item 3) and the reference risk features.

Until a merchant has labelled history, BastionPay's model starts from one trained on this
simulator: legitimate buyers plus card testing, account takeover, velocity bursts, geography
mismatch and high-value anomalies. docs/risk-simulator.md documents every behaviour and rate.

* `simulate(n_events, seed=…)` yields `SimulatedPayment`s in time order: the raw attempt, its
  features (`feature_schema.FEATURES`), the label and the scenario.
* `write_csv(path, n_events, seed=…)` writes a training file for `bastionpay risk train`.
* `History` is the reference implementation of the features, shared with the api's parity test.

`python -m bastionpay.risk.simulator OUT.csv --events N --seed S` writes a file from the shell.
"""

from bastionpay.risk.simulator.events import (
    DECLINED_OUTCOMES,
    FRAUD_SCENARIOS,
    Outcome,
    PaymentEvent,
    Scenario,
    SimulatedPayment,
)
from bastionpay.risk.simulator.export import CSV_COLUMNS, write_csv
from bastionpay.risk.simulator.generator import DEFAULT_START, simulate
from bastionpay.risk.simulator.history import NULLABLE_FEATURES, RATIO_DIGITS, History
from bastionpay.risk.simulator.params import MERCHANT_PROFILES, SimulatorConfig
from bastionpay.risk.simulator.world import merchant_ids, merchant_timezones

__all__ = [
    "CSV_COLUMNS",
    "DECLINED_OUTCOMES",
    "DEFAULT_START",
    "FRAUD_SCENARIOS",
    "MERCHANT_PROFILES",
    "NULLABLE_FEATURES",
    "RATIO_DIGITS",
    "History",
    "Outcome",
    "PaymentEvent",
    "Scenario",
    "SimulatedPayment",
    "SimulatorConfig",
    "merchant_ids",
    "merchant_timezones",
    "simulate",
    "write_csv",
]
