"""The cardholder data environment (CDE): the only part of BastionPay that ever sees a card number.

This package holds the vault's core as a library — card validation (`cards`), the data-key
hierarchy over pluggable storage (`interfaces`, `keyring`, `memory`) and card fingerprints
(`fingerprint`). It imports only `kernel` and `crypto` (ARCHITECTURE: checked boundaries); nothing
outside the vault imports it except through the vault's client module.
"""
