"""Cryptographic recipes. Callers never handle raw primitives (STYLE: pyca/cryptography)."""
