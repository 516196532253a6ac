"""Disputes (chargebacks): Stripe's Dispute object, opened and decided by the card network."""
