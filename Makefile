# fruits-emr: `make` lists the targets. Two commands set everything up: `make demo`, `make test`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
# configurable-http-proxy (JupyterHub's proxy, for `fruits hub`), pinned by requirements/npm/package-lock.json
PROXY := requirements/npm/node_modules/.bin/configurable-http-proxy
PIP_INSTALL := $(BIN)/python -m pip install --disable-pip-version-check -q -c requirements/constraints.txt
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYTHONUNBUFFERED := 1

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_.-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml requirements/constraints.txt requirements/sparkmagic.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required (python3.11 not found)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "Python 3.11 is required, $(PYTHON) is $$($(PYTHON) --version)"; exit 1; }
	@command -v java >/dev/null || { echo "Java 17 is required by Spark (java not found on PATH)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip setuptools wheel
	$(PIP_INSTALL) -e ".[local]"
	$(PIP_INSTALL) --no-deps -r requirements/sparkmagic.txt
	@# jupyter-events asks for jsonschema[format-nongpl], whose rfc3987-syntax builds ~35 Earley
	@# parsers (lark) when jsonschema is imported: 2.4 s of CPU in every process that imports it
	@# (JupyterHub, each user's Jupyter server, papermill, nbformat). It only checks the "iri"
	@# string formats, which no Jupyter schema uses; without it jsonschema skips them.
	$(BIN)/python -m pip uninstall --disable-pip-version-check -y -q rfc3987-syntax lark
	$(BIN)/jupyter-kernelspec install --sys-prefix "$$($(BIN)/python -c 'import os, sparkmagic; print(os.path.dirname(sparkmagic.__file__))')/kernels/pysparkkernel"
	touch $(STAMP)

env: $(STAMP) $(PROXY) ## Create the virtual environment .venv from the pinned dependencies, and the JVM's class archive
	@# Local Spark sessions start warm from it (fruits.spark.jvm_archive, built by fruits.run.jvm_archive_build); without it they only start slower.
	@$(BIN)/python -m fruits.run.jvm_archive_build --if-missing || echo "WARNING: the driver JVM's class archive could not be built (see above): local Spark sessions will start without it, a few seconds slower"

demo: env ## Run the pipeline on generated synthetic images and write the HTML report
	$(BIN)/fruits run --output output/demo -p mode overwrite

# Test files run side by side in TEST_WORKERS pytest processes (pytest-xdist), each file whole in
# one of them (its module fixtures start once): most tests wait on JVMs, kernels and servers
# more than they compute. TEST_WORKERS=0 runs them in this process, one after the other.
TEST_WORKERS ?= 3

test: env browser ## Run the test suite in parallel workers (real-data tests need FRUITS_WEIGHTS and FRUITS_TEST_IMAGES)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: env ## Run the plumbing tests and doctests only (no Spark, no real data; make test runs all)
	$(BIN)/python -m pytest -m "not slow and not spark"

browser: $(CHROMIUM) ## Install Chromium from Debian's packages for the report's browser test (skipped when present)

# Playwright drives Debian's Chromium (its own browser download is not used). Root or
# passwordless sudo installs it; elsewhere the browser test says why it is skipped
# (and fails under CI=true).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; else sudo="-"; fi; \
	if ! command -v apt-get >/dev/null || [ "$$sudo" = "-" ]; then \
	  echo "Chromium ($(CHROMIUM)) is missing and cannot be installed here (needs apt-get as root): the browser test will be skipped"; \
	else \
	  set -x; $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends chromium; \
	fi

# Into the project (npm ci --prefix), never globally. Without npm, `fruits hub` and its test say why they cannot run.
$(PROXY): requirements/npm/package.json requirements/npm/package-lock.json
	@if command -v npm >/dev/null; then \
	  set -x; npm ci --prefix requirements/npm --no-audit --no-fund --loglevel=error && touch $(PROXY); \
	else \
	  echo "npm is missing: configurable-http-proxy (for fruits hub and its test) is not installed"; \
	fi

hub: env ## JupyterHub as on EMR on https://localhost:9443 (root; users alice,bob; Ctrl-C stops it; docs/jupyterhub.md)
	$(BIN)/fruits hub

lab: env ## Open the paired notebooks in JupyterLab
	$(PIP_INSTALL) -e ".[local,lab]"
	@# Jupyter refuses to run as root without --allow-root: a container's user is often root.
	@# LAB_ARGS passes more options, e.g. make lab LAB_ARGS="--no-browser --ServerApp.port=8899".
	$(BIN)/jupyter lab --notebook-dir=notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

livy: env ## Serve the Livy double on 127.0.0.1:8998 (try the cloud notebook locally; Ctrl-C stops it)
	$(BIN)/fruits livy

sync-notebooks: env ## Regenerate the notebooks' parameters, %%configure and shared cells (notebooks/shared/body.py), emr-config/configurations.json and the .ipynb files from their sources
	$(BIN)/python tools/sync_derived.py --write
	$(BIN)/jupytext --sync notebooks/*.py

environment.yml: pyproject.toml requirements/constraints.txt ## Regenerate environment.yml from the pinned dependencies
	$(BIN)/python tools/sync_environment.py --write

lock: env ## Re-pin requirements/constraints.txt from .venv (with the lab extra installed)
	$(PIP_INSTALL) -e ".[local,lab]"
	$(BIN)/python tools/lock.py

clean: ## Remove generated data, outputs and the environment
	rm -rf $(VENV) output data .pytest_cache

.PHONY: help env browser demo test test-fast hub lab livy sync-notebooks lock clean
