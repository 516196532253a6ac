"""Disputes with the real processes and the official Stripe SDK: Stripe's dispute test card goes
through the vault and the simulated acquirer (approved), the dispute opens on capture, winning
evidence wins it and the funds come back; an operator opens one with the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import stripe

pytestmark = pytest.mark.e2e
FEE = 1500  # Settings.dispute_fee


def test_a_dispute_test_card_is_disputed_and_winning_evidence_wins(
    client: stripe.StripeClient, pay: Callable[..., stripe.PaymentIntent]
) -> None:
    pi = pay(amount=4200, payment_method="pm_card_createDispute")
    assert pi.status == "succeeded"
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.disputed is True
    assert charge.payment_method_details.card.last4 == "0259"

    listed = client.v1.disputes.list({"payment_intent": pi.id})
    assert len(listed.data) == 1
    dispute = listed.data[0]
    assert isinstance(dispute, stripe.Dispute)
    assert (dispute.reason, dispute.status, dispute.amount) == (
        "fraudulent",
        "needs_response",
        4200,
    )
    assert dispute.charge == charge.id
    (withdrawal,) = dispute.balance_transactions
    assert (withdrawal.amount, withdrawal.fee, withdrawal.net) == (-4200, FEE, -4200 - FEE)
    assert withdrawal.reporting_category == "dispute"

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create({"payment_intent": pi.id})
    assert refused.value.code == "charge_disputed"

    staged = client.v1.disputes.update(
        dispute.id,
        {"evidence": {"product_description": "A ticket", "customer_name": "J"}, "submit": False},
    )
    assert staged.status == "needs_response"
    assert staged.evidence.product_description == "A ticket"
    won = client.v1.disputes.update(
        dispute.id, {"evidence": {"uncategorized_text": "winning_evidence"}}
    )
    assert won.status == "won"
    assert won.evidence_details.submission_count == 1
    reversal = won.balance_transactions[1]
    assert (reversal.amount, reversal.fee, reversal.net) == (4200, -FEE, 4200 + FEE)
    assert reversal.reporting_category == "dispute_reversal"
    assert client.v1.disputes.retrieve(dispute.id).status == "won"

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.disputes.update(dispute.id, {"evidence": {"receipt": "file_x"}})
    assert unknown.value.code == "parameter_unknown"


def test_an_operator_opens_a_dispute_and_the_merchant_accepts_it(
    platform: Any,
    client: stripe.StripeClient,
    pay: Callable[..., stripe.PaymentIntent],
    balance_total: Callable[[], int],
) -> None:
    pi = pay(amount=3000, payment_method="pm_card_visa")
    before = balance_total()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bastionpay",
            "disputes",
            "open",
            "--charge",
            str(pi.latest_charge),
            "--reason",
            "product_not_received",
            "--data-dir",
            str(platform.data_dir),
        ],
        capture_output=True,
        text=True,
        env=dict(platform.env),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    opened = json.loads(result.stdout)
    assert balance_total() == before - 3000 - FEE

    closed = client.v1.disputes.close(opened["id"])
    assert closed.status == "lost"
    assert [d.id for d in client.v1.disputes.list({"charge": pi.latest_charge}).data] == [closed.id]
    assert balance_total() == before - 3000 - FEE
