"""Merchants domain."""
