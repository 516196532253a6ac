# BastionPay — see README.md. Every target sets up what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench bench-waf bench-risk clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## make run: set up, initialise ./var on first run, start the platform (Ctrl-C stops it)
run: $(STAMP)
	$(PY) -m bastionpay up --data-dir $${BASTIONPAY_DATA_DIR:-var}

## make test: lint, type checks, architecture contracts and the whole test suite
test: lint typecheck
	scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench deploy
	$(VENV)/bin/ruff format --check src tests bench deploy
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## make bench: payments/s and latency vs a no-op baseline, SQLite and PostgreSQL
bench: $(STAMP)
	$(PY) bench/run.py --backend both

## make bench-waf: payments/s and latency, api direct vs nginx vs nginx + ModSecurity + CRS
bench-waf: $(STAMP)
	$(PY) bench/waf.py

## make bench-risk: the fraud model on the ULB credit-card data (downloads a 76 MB wheel once into ~/.cache/bastionpay) and the cost of one score
bench-risk: $(STAMP)
	$(PY) bench/risk.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
