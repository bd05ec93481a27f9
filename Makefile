# One entry point for everything. `make run` and `make test` install what they need.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
# freqtrade, pinned, in its own environment: the e2e test that runs a third-party ccxt bot
# against `warden sim serve` (tests/e2e/test_freqtrade.py). Built once, then kept.
FT_VENV   ?= .venv-freqtrade
FT_STAMP   = $(FT_VENV)/.installed-stamp
FT_REQS    = tests/e2e/freqtrade/requirements.txt

.PHONY: run test check fmt fmt-check lint types layers bench clean testnet-smoke

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(FT_STAMP): $(FT_REQS)
	$(PYTHON) -m venv $(FT_VENV)
	$(FT_VENV)/bin/pip install --quiet --upgrade pip
	$(FT_VENV)/bin/pip install --quiet -r $(FT_REQS)
	touch $(FT_STAMP)

run: $(STAMP)
	$(BIN)/warden run

test: $(STAMP) $(FT_STAMP)
	WARDEN_FREQTRADE=$(FT_VENV)/bin/freqtrade $(BIN)/python -m pytest

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
	rm -rf $(VENV) $(FT_VENV) .mypy_cache .pytest_cache .ruff_cache
