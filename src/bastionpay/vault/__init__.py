"""The cardholder data environment (CDE): the only part of BastionPay that ever sees a card number.

The core library — card validation (`cards`), the data-key hierarchy over pluggable storage
(`interfaces`, `keyring`, `memory`) and card fingerprints (`fingerprint`) — and the vault process
built on it: its database (`models`, `migrations`, `store`), tokenization and payments (`tokens`,
`payments`, `keys`), its audit log (`auditlog`), the two listeners (`internal` over mutual TLS,
`public` hosted fields) and `bastionpay vault` (`cli`, `server`). See docs/vault.md.

It imports only kernel, crypto, db, edge, audit, observability and the acquirer's client side
(ARCHITECTURE: checked boundaries); nothing outside the vault imports it — the api talks to it over
HTTPS with a client certificate.
"""
