"""Idempotency domain."""
