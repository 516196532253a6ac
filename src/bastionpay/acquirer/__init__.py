"""The simulated acquirer/issuer host: ISO 8583 over TCP (issue 4, items 5 and 6).

Outside the cardholder-data environment and the api: it stands in for the card network. It may
import only `bastionpay.kernel` and `bastionpay.observability` (an import-linter contract).

Modules, each small and about one thing:

- `spec` — our ISO 8583 field spec (derived from pyiso8583's `default_ascii`), MTIs, codes;
- `framing` — the 2-byte big-endian length prefix, bounded;
- `messages` — encode/decode with field validation; DE 48 subelements and DE 90;
- `codes` — ISO 8583 response code → Stripe `code` / `decline_code`, in one place;
- `testcards` — Stripe's test card numbers and the simulator's own fault-injection numbers;
- `faults`, `settings` — fault injection by configuration;
- `issuer` — the issuer's per-authorization state machine;
- `server`, `background`, `cli` — the asyncio TCP host, a thread runner, `bastionpay acquirer`;
- `client`, `transport`, `results` — the thread-safe blocking client the vault uses, how its
  messages travel (injectable), and its typed outcomes (timeouts → reversals).

See docs/acquirer.md for the message and field choices.
"""
