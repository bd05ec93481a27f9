# One entry point for everything. `make run` and `make test` install what they need.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
# The Drift sidecar's own environment (driftpy pins ~80 packages and cannot share one with ccxt).
# Rebuilt only when its lock or its package definition changes; needs Python 3.11 and a C compiler.
DRIFT_VENV   ?= .drift-venv
DRIFT_PYTHON ?= python3.11
DRIFT_STAMP   = $(DRIFT_VENV)/.installed-stamp
DRIFT_DIR     = sidecar/drift
# freqtrade, pinned, in its own environment: the e2e test that runs a third-party ccxt bot
# against `warden sim serve` (tests/e2e/test_freqtrade.py). Built once, then kept.
FT_VENV   ?= .venv-freqtrade
FT_STAMP   = $(FT_VENV)/.installed-stamp
FT_REQS    = tests/e2e/freqtrade/requirements.txt

.PHONY: run test check fmt fmt-check lint types layers bench clean drift drift-test drift-devnet testnet-smoke

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# Bytecode for warden's own modules, as a wheel install has it (an editable install does
	# not, and with PYTHONDONTWRITEBYTECODE set Python never writes it): each start then
	# imports rather than compiles them (`warden bench recovery` counts start-up).
	$(BIN)/python -m compileall -q src/warden
	touch $(STAMP)

$(FT_STAMP): $(FT_REQS)
	$(PYTHON) -m venv $(FT_VENV)
	$(FT_VENV)/bin/pip install --quiet --upgrade pip
	$(FT_VENV)/bin/pip install --quiet -r $(FT_REQS)
	touch $(FT_STAMP)

run: $(STAMP)
	$(BIN)/warden run

# Everything CI checks: format, lint, types, layers, then both test suites (either failing
# fails the target).
test: $(STAMP) $(DRIFT_STAMP) $(FT_STAMP)
	$(BIN)/ruff format --check src tests sidecar
	$(BIN)/ruff check src tests sidecar
	$(BIN)/mypy
	$(BIN)/lint-imports
	status=0; WARDEN_FREQTRADE=$(FT_VENV)/bin/freqtrade $(BIN)/python -m pytest || status=$$?; \
	$(DRIFT_VENV)/bin/python -m pytest $(DRIFT_DIR) -q || status=$$?; \
	exit $$status

$(DRIFT_STAMP): $(DRIFT_DIR)/requirements.lock $(DRIFT_DIR)/pyproject.toml
	rm -rf $(DRIFT_VENV)
	$(DRIFT_PYTHON) -m venv $(DRIFT_VENV)
	$(DRIFT_VENV)/bin/pip install --quiet --upgrade pip
	$(DRIFT_VENV)/bin/pip install --quiet -r $(DRIFT_DIR)/requirements.lock
	$(DRIFT_VENV)/bin/pip install --quiet --no-deps -e $(DRIFT_DIR)
	touch $(DRIFT_STAMP)

drift: $(DRIFT_STAMP)

drift-test: $(DRIFT_STAMP)
	$(DRIFT_VENV)/bin/python -m pytest $(DRIFT_DIR) -q

# Opt-in, never in CI: a real devnet round trip. Needs DRIFT_RPC_URL (a devnet RPC) and
# DRIFT_KEYPAIR_PATH (a funded devnet keypair with a Drift account). See README "Drift".
drift-devnet: $(STAMP) $(DRIFT_STAMP)
	$(BIN)/python scripts/drift_devnet_smoke.py

fmt: $(STAMP)
	$(BIN)/ruff format src tests sidecar
	$(BIN)/ruff check --fix src tests sidecar

fmt-check: $(STAMP)
	$(BIN)/ruff format --check src tests sidecar

lint: $(STAMP)
	$(BIN)/ruff check src tests sidecar

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

check: test

clean:
	rm -rf $(VENV) $(DRIFT_VENV) $(FT_VENV) .mypy_cache .pytest_cache .ruff_cache
