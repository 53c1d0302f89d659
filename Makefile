# Two commands do everything on a fresh Debian/Ubuntu box with Python >= 3.11:
#   make up    start the embedded fleet (Redis, API, worker, Flower) in the foreground
#   make test  lint, type-check and run the test suite against real processes
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# The CPU build of torch (this pin resolves to a local CPU wheel on the project's CI boxes).
# On a GPU box install the CUDA build first, e.g. TORCH_SPEC='torch --index-url <CUDA index>'.
TORCH_SPEC ?= torch==2.13.0

.PHONY: up test test-faults bench lint install redis-server chromium clean

up: install redis-server
	$(BIN)/ttsfleet up

test: install redis-server chromium lint
	$(BIN)/pytest

# Batching gain, queue tax and latency on this machine; writes bench/out/bench.{json,png}.
bench: install redis-server
	$(PIP) install -e '.[bench]'
	$(BIN)/python -m bench.run

test-faults: install redis-server
	$(BIN)/pytest -m slow

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "ttsfleet needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH_SPEC)
	$(PIP) install -e '.[piper,transformers,dev]'
	@touch $@

# Installed from the system's packages when missing; the fleet and the tests start their
# own redis-server on a free port and never use a system instance on 6379.
redis-server:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "redis-server is missing and there is no apt-get: install redis-server (>= 6) and rerun" >&2; exit 1; fi; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else \
	    echo "redis-server is missing and this user cannot run apt-get: install redis-server and rerun" >&2; exit 1; fi; \
	  echo "installing redis-server with apt-get"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; \
	fi

# The playground's browser test drives Debian's headless chromium (never a downloaded one).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "chromium is missing and there is no apt-get: install chromium at /usr/bin/chromium and rerun" >&2; exit 1; fi; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else \
	    echo "chromium is missing and this user cannot run apt-get: install chromium and rerun" >&2; exit 1; fi; \
	  echo "installing chromium with apt-get"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

clean:
	rm -rf $(VENV) .ttsfleet test-output .mypy_cache .ruff_cache .pytest_cache
