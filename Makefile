# mendnet: `make demo` runs the main job, `make test` runs the test suite (both set up on first use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DATA := /usr/share/datasets/fashion-mnist
# --no-compile: Python compiles a module when it is first imported, so the set-up need not compile the
# thousands that are never imported (torch's and Ray's; about 25 s less set-up on 2 cores).
PIP := $(BIN)/python -m pip install -q --no-compile

.PHONY: setup dev-setup demo test lint bench clean data browser

# What `make demo` needs: torch 2.13.0 (the CPU wheel here; a bare torch pulls a CUDA build) and mendnet.
setup: $(STAMP) data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $(STAMP)

# What `make test` and `make lint` need besides: the dev extras (pytest, hypothesis, ruff, ray, selenium).
dev-setup: $(DEV_STAMP) data

$(DEV_STAMP): $(STAMP)
	$(PIP) -e '.[dev]'
	touch $(DEV_STAMP)

# Fashion-MNIST from Debian when apt is available (as root, or through sudo without a password).
data:
	@if [ -d $(DATA) ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	    echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist', or download it with '$(BIN)/mendnet demo --download --data-dir DIR'"; exit 0; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "Fashion-MNIST missing and no apt-get: download it with '$(BIN)/mendnet demo --download --data-dir DIR' (train, poison, eval, robustify and audit take --download too), or pass --data-dir"; fi

# Headless Chromium and its driver for the test of the audit's HTML report (Debian packages, ~350 MB);
# `make test` installs them, `make demo` does not need them.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	    echo "chromium missing: run 'sudo apt-get install chromium chromium-driver' (HTML report test)"; exit 0; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "chromium missing and no apt-get: the HTML report test skips (fails in CI)"; fi

demo: setup
	$(BIN)/mendnet demo --force

test: dev-setup browser
	$(BIN)/python -m pytest --durations=15

lint: dev-setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
