"""The api app: Stripe-style decoding, errors, pagination, routing."""
