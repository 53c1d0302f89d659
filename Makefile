# Two commands do everything on a fresh Debian/Ubuntu box with Python >= 3.11:
#   make up    start the embedded fleet (Redis, API, worker, Flower) in the foreground
#   make test  lint, type-check and run the test suite against real processes
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# The CPU build of torch (this pin resolves to a local CPU wheel on the project's CI boxes).
# On a GPU box install the CUDA build first, e.g. TORCH_SPEC='torch --index-url <CUDA index>'.
TORCH_SPEC ?= torch==2.13.0

.PHONY: up test test-faults test-deploy bench gpu-bundle lint install install-run redis-server chromium ffmpeg wrk promtool clean

up: install-run redis-server
	$(BIN)/ttsfleet up

test: install redis-server chromium ffmpeg promtool lint
	$(BIN)/pytest

# Batching gain, queue tax and latency on this machine, then what the submit API costs
# against bare FastAPI (wrk); writes bench/out/bench.{json,png} and bench/out/api.json.
bench: install redis-server wrk
	$(PIP) install -e '.[server,bench]'
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.api

# The wheels and Debian packages (redis-server) a lent GPU machine lacks, in .gpu-bundle/,
# and the one command that runs bench.gpu there (engine and fleet; see bench/gpu_run.sh).
gpu-bundle: install
	$(BIN)/python -m bench.bundle

test-faults: install redis-server
	$(BIN)/pytest -m slow

# docker-compose.yml run for real, every role in its own container, driven from the host
# (tests/deploy/live). Needs root (it starts its own dockerd when none runs), apt and about
# 15 GB of free disk; not part of `make test`. See README, "Tests" and "Operating".
test-deploy: install
	$(call apt-ensure,dockerd,docker.io)
	$(call apt-ensure,docker-compose,docker-compose)
	$(call apt-ensure,debootstrap,debootstrap)
	PYTHON=$(BIN)/python tests/deploy/live/run.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# `make up` needs the fleet and the bundled voice; tests and benchmarks add torch,
# transformers and the development tools.
install-run: $(RUN_STAMP)
install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "ttsfleet needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[server,piper]'
	@touch $@

$(STAMP): $(RUN_STAMP)
	$(PIP) install $(TORCH_SPEC)
	$(PIP) install -e '.[server,piper,transformers,dev]'
	@touch $@

# $(call apt-ensure,COMMAND,PACKAGE): install PACKAGE with apt-get unless COMMAND exists,
# or say clearly what to do where that is impossible.
define apt-ensure
	@if ! command -v $(1) >/dev/null 2>&1; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "$(1) is missing and there is no apt-get: install $(2) and rerun" >&2; exit 1; fi; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else \
	    echo "$(1) is missing and this user cannot run apt-get: install $(2) and rerun" >&2; exit 1; fi; \
	  echo "installing $(2) with apt-get"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(2) >/dev/null; \
	fi
endef

# The fleet and the tests start their own redis-server on a free port and never use a
# system instance on 6379.
redis-server:
	$(call apt-ensure,redis-server,redis-server)

# The tests' independent audio decoder and loudness meter (ffprobe, ffmpeg's ebur128).
ffmpeg:
	$(call apt-ensure,ffprobe,ffmpeg)

# bench.api's load generator.
wrk:
	$(call apt-ensure,wrk,wrk)

# The playground's browser test drives Debian's headless chromium (never a downloaded one).
chromium:
	$(call apt-ensure,/usr/bin/chromium,chromium)

# `promtool check rules` / `promtool test rules` on the alert rules (tests/deploy/test_rules.py).
# Debian ships promtool in the `prometheus` package (on a systemd host it also enables the
# server's unit; nothing here uses it).
promtool:
	$(call apt-ensure,promtool,prometheus)

clean:
	rm -rf $(VENV) .ttsfleet test-output build .gpu-bundle .mypy_cache .ruff_cache .pytest_cache
