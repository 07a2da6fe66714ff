# Stratus — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
export STRATUS_DATA_DIR ?= $(CURDIR)/var

.PHONY: run test bench screenshots install install-dev frontend lint typecheck pytest serve-ci clean extension-test vsix

run: install frontend
	$(PY) manage.py migrate --noinput -v 0
	@echo "== Stratus demo logins and API tokens (Authorization: Bearer <token>) =="
	@$(PY) manage.py seed_demo
	@echo "== Serving http://127.0.0.1:$(PORT)/  (API docs: /api/v1/docs/) =="
	$(PY) manage.py serve --host 127.0.0.1 --port $(PORT)

test: install-dev frontend lint typecheck extension-test pytest

lint:
	$(VENV)/bin/ruff check .

typecheck:
	$(VENV)/bin/mypy .

pytest:
	$(VENV)/bin/pytest

# Gateway latency/throughput vs a bare ASGI app, cold starts, deploy-to-ready: a table on
# stdout and bench-results/bench.json (a throwaway data dir; STRATUS_DATA_DIR is not used).
# bench.pages: the function pages' render times; bench.ide: the WebIDE's editor ready (in
# Chromium, Monaco from frontend/build), save and draft-run round trips (bench-results/ide.json).
# bench.metrics: rollup write rate vs the plain insert, metrics API reads over 1M records
# (bench-results/metrics.json).
# bench.logs: a printed line to 10 live-tail websockets at 200 lines/s (bench-results/logs.json).
# bench.triggers: schedule fire latency after the scheduled second vs a direct invoke (bench-results/triggers.json).
bench: install-dev frontend
	$(PY) -m bench.run
	$(PY) -m bench.pages
	$(PY) -m bench.ide
	$(PY) -m bench.metrics
	$(PY) -m bench.logs
	$(PY) -m bench.triggers

# The console's main pages as PNGs in docs/screenshots/ (a served demo console, Chromium).
screenshots: install-dev frontend
	$(PY) -m bench.screenshots

# --- installs (stamped, so a second run reuses them) -------------------------------------
$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.lock | $(PY)
	$(PY) -m pip install -q -r requirements.lock
	touch $@

$(VENV)/.installed-dev: requirements-dev.lock | $(PY)
	$(PY) -m pip install -q -r requirements-dev.lock
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

frontend/node_modules/.package-lock.json: frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

frontend/build/vendor/htmx.min.js: frontend/node_modules/.package-lock.json frontend/build.mjs
	cd frontend && npm run -s build

frontend: frontend/build/vendor/htmx.min.js

# --- the VS Code extension (vscode-extension/): dev tools from its lock file, no download at
# test time. Unit tests: node's test runner with a stub of `vscode` (a few seconds).
EXT := vscode-extension
EXT_VERSION = $(shell node -p "require('./$(EXT)/package.json').version")

$(EXT)/node_modules/.package-lock.json: $(EXT)/package-lock.json
	cd $(EXT) && npm ci --no-audit --no-fund
	touch $@

extension-test: $(EXT)/node_modules/.package-lock.json
	cd $(EXT) && npm test --silent

# stratus-<version>.vsix: both bundles (desktop and web) packaged with @vscode/vsce, offline.
vsix: $(EXT)/node_modules/.package-lock.json
	cd $(EXT) && npm run -s package
	@echo "== $(EXT)/stratus-$(EXT_VERSION).vsix =="

# Regenerate the lock files after changing pyproject.toml.
lock: $(PY)
	$(PY) -m pip install -q pip-tools
	$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile -q --strip-extras --extra dev --no-emit-index-url --no-emit-find-links -o requirements-dev.lock pyproject.toml

clean:
	rm -rf $(VENV) frontend/node_modules frontend/build $(EXT)/node_modules $(EXT)/out $(EXT)/dist $(EXT)/*.vsix
