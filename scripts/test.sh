#!/usr/bin/env bash
# Runs the whole suite. Under CI (BASTIONPAY_REQUIRE_SERVICES=1) tests that need PostgreSQL fail
# instead of skipping when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -n 2 --dist loadgroup "$@"
