# One entry point for everything. `make run` and `make test` install what they need.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: run test check fmt fmt-check lint types layers bench clean testnet-smoke

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/warden run

test: $(STAMP)
	$(BIN)/python -m pytest

fmt: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

fmt-check: $(STAMP)
	$(BIN)/ruff format --check src tests

lint: $(STAMP)
	$(BIN)/ruff check src tests

types: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/warden bench all

# Opt-in, never in CI: the ccxt adapter against a venue's test environment, with testnet keys in
# WARDEN_API_KEY / WARDEN_API_SECRET and WARDEN_TESTNET_EXCHANGE=bybit|binanceusdm
# (WARDEN_TESTNET_TRADE=1 also places, checks and removes one small position with its stop).
testnet-smoke: $(STAMP)
	WARDEN_TESTNET_SMOKE=1 $(BIN)/python -m pytest tests/testnet -m testnet -v

check: fmt-check lint types layers test

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
