# `make run` and `make test` are the README's two commands: each installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG15_BIN := /usr/lib/postgresql/15/bin

.PHONY: install run test lint bench bench-quick clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "pysvc needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,dev,bench]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# The suite proves the migrations on PostgreSQL 15 (Supabase's hosted major) too.
$(PG15_BIN)/postgres:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; \
	else echo "install PostgreSQL 15 server binaries (Debian: apt-get install postgresql-15) or set PYSVC_PG15_BIN"; exit 1; fi

run: install
	$(BIN)/pysvc dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install $(PG15_BIN)/postgres lint
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick

clean:
	-$(BIN)/pysvc stack stop
	rm -rf .pysvc
