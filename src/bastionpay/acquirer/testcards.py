"""Card numbers that drive the simulated issuer's answers.

Stripe's published test numbers (/work/shared/reference/test-cards-and-codes.md) answer as they do
on Stripe, so merchants' existing tests carry over. Numbers outside these tables are approved when
they pass the Luhn check (`14` otherwise) and have not expired (`54`).

The simulator's own numbers use the test BIN `40000099` and the pattern `4000 0099 0000 0NNC`
(`NN` the behaviour, `C` the Luhn check digit), so they never collide with Stripe's numbers.
"""

from __future__ import annotations

from typing import Final

from bastionpay.acquirer.faults import Fault

# Stripe test card → ISO 8583 response code.
DECLINES: Final[dict[str, str]] = {
    "4000000000000002": "05",  # pm_card_chargeDeclined → generic_decline
    "4000000000009995": "51",  # insufficient_funds
    "4000000000009987": "41",  # lost_card
    "4000000000009979": "43",  # stolen_card
    "4000000000000069": "54",  # expired_card
    "4000000000000127": "N7",  # incorrect_cvc
    "4000000000000119": "96",  # processing_error
    "4000000000006975": "65",  # card_velocity_exceeded
    "4100000000000019": "59",  # pm_card_radarBlock → fraudulent (the issuer agrees with Radar)
    # The simulator's own:
    "4000009900000913": "91",  # issuer unavailable → issuer_not_available
    "4000009900000616": "61",  # exceeds amount limit → card_velocity_exceeded
}

# Cards that need 3-D Secure: without a fully authenticated result in DE 48 (ECI 05 or 02 and a
# well-formed authentication value, `acquirer.authentication`) the issuer soft-declines with `1A`;
# with one it answers the code given here.
AUTHENTICATION_REQUIRED: Final[dict[str, str]] = {
    "4000002760003184": "00",  # pm_card_authenticationRequired
    "4000000000003220": "00",  # pm_card_threeDSecure2Required
    "4000008260003178": "51",  # authenticates, then insufficient funds
}
FULLY_AUTHENTICATED_ECI: Final = frozenset({"05", "02"})  # Visa / Mastercard

# Approved, but the CVC2 result in DE 44 is `N` (Stripe's `cvc_check: fail`).
CVC_CHECK_FAIL: Final = frozenset({"4000000000000101"})

FAULT_CARDS: Final[dict[str, Fault]] = {
    "4000009900000111": Fault.SLOW,
    "4000009900000129": Fault.LATE,
    "4000009900000210": Fault.NO_ANSWER,
    "4000009900000319": Fault.DROP,
    "4000009900000418": Fault.GARBAGE,
    "4000009900000426": Fault.WRONG_MTI,
    "4000009900000434": Fault.WRONG_STAN,
    "4000009900000442": Fault.STRAY,
}
