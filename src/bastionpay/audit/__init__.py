"""Tamper-evident audit log (SECURITY-REQUIREMENTS L1, L2)."""
