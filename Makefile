# `make run` and `make test` are the README's two commands: each installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# PostgreSQL 15 (Supabase's hosted major) for tests/test_stack.py::test_migrations_apply_on_postgres_15:
# PYSVC_PG15_BIN wins, else Debian's package. CI=true makes a missing one a failure, never a skip.
PG15_BIN := $(or $(PYSVC_PG15_BIN),/usr/lib/postgresql/15/bin)
PG15_TEST := tests/test_stack.py::test_migrations_apply_on_postgres_15

.PHONY: install pg15 pytest run test lint bench bench-quick clean

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

# The suite proves the migrations on PostgreSQL 15 too: as root with apt-get, install Debian's
# postgresql-15 when it is missing. Without it `make test` deselects that one test, loudly;
# under CI=true a missing PostgreSQL 15 fails the run instead.
pg15:
	@if [ ! -x "$(PG15_BIN)/postgres" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's postgresql-15 (migrations on Supabase's hosted major)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null \
	    || echo "apt-get install postgresql-15 failed" >&2; \
	fi
	@if [ ! -x "$(PG15_BIN)/postgres" ] && [ "$(CI)" = true ]; then \
	  echo "CI: no PostgreSQL 15 in $(PG15_BIN): run as root (make test installs postgresql-15) or set PYSVC_PG15_BIN" >&2; \
	  exit 1; \
	fi

run: install
	$(BIN)/pysvc dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install pg15 lint
	@$(MAKE) --no-print-directory pytest

# The suite alone (PYTEST_ARGS: extra arguments), deselecting the PostgreSQL 15 test loudly where
# there is no PostgreSQL 15 (the `pg15` target makes that a failure under CI=true).
pytest:
	@if [ -x "$(PG15_BIN)/postgres" ]; then skip=""; else skip="--deselect $(PG15_TEST)"; \
	  echo "!!! no PostgreSQL 15 in $(PG15_BIN): DESELECTING $(PG15_TEST). Enable it: make test as root" \
	    "(installs postgresql-15), or apt-get install postgresql-15, or PYSVC_PG15_BIN=/path/to/15/bin make test" >&2; \
	fi; \
	echo "$(BIN)/pytest $$skip $(PYTEST_ARGS)"; PYSVC_PG15_BIN="$(PG15_BIN)" $(BIN)/pytest $$skip $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick

clean:
	-$(BIN)/pysvc stack stop
	rm -rf .pysvc
