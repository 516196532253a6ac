"""Structured, redacting logs and metrics (SECURITY-REQUIREMENTS L3)."""
