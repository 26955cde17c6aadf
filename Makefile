# `make run` and `make test` are the README's two commands: each installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# PostgreSQL 15 (Supabase's hosted major) for tests/test_stack.py::test_migrations_apply_on_postgres_15:
# PYSVC_PG15_BIN wins, else Debian's package. CI=true makes a missing one a failure, never a skip.
PG15_BIN := $(or $(PYSVC_PG15_BIN),/usr/lib/postgresql/15/bin)
PG15_TEST := tests/test_stack.py::test_migrations_apply_on_postgres_15

.PHONY: install pg15 pytest run test lint bench bench-quick clean pgtap test-db types

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

# pgTAP, pg_prove and plpgsql_check for PostgreSQL 15 (tests/test_supabase_tools.py: what
# `supabase test db` and `supabase db lint` run, without Docker): as root with apt-get, installed when
# missing. Without them `make test` deselects that module, loudly; under CI=true they must be there.
PGTAP_PACKAGES := postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl postgresql-15-plpgsql-check
PGTAP_TEST := tests/test_supabase_tools.py
PG15_SHARE := $(shell $(PG15_BIN)/pg_config --sharedir 2>/dev/null || echo /usr/share/postgresql/15)
PGTAP_READY = [ -f "$(PG15_SHARE)/extension/pgtap.control" ] && [ -f "$(PG15_SHARE)/extension/plpgsql_check.control" ] \
  && command -v pg_prove >/dev/null

pgtap: pg15
	@if ! { $(PGTAP_READY); } && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $(PGTAP_PACKAGES) (supabase test db / db lint without Docker)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PGTAP_PACKAGES) >/dev/null \
	    || echo "apt-get install $(PGTAP_PACKAGES) failed" >&2; \
	fi
	@if ! { $(PGTAP_READY); } && [ "$(CI)" = true ]; then \
	  echo "CI: pgTAP, plpgsql_check or pg_prove missing for PostgreSQL 15: run as root (make test installs $(PGTAP_PACKAGES))" >&2; \
	  exit 1; \
	fi

# The pgTAP files (pg_prove) and supabase db lint on PostgreSQL 15, alone.
test-db: install pgtap
	PYSVC_PG15_BIN="$(PG15_BIN)" $(BIN)/pytest -q $(PGTAP_TEST) $(PYTEST_ARGS)

# pysvc/db_types.py from a scratch database with the migrations: run after changing the schema.
types: install
	$(BIN)/python -m pysvc.local.supabase_tools types

# PORT=8001 make run (or make run PORT=8001): the API on another port.
run: install
	$(BIN)/pysvc dev $(if $(PORT),--port $(PORT))

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install pg15 pgtap lint
	@$(MAKE) --no-print-directory pytest

# The suite alone (PYTEST_ARGS: extra arguments), deselecting the PostgreSQL 15 test loudly where
# there is no PostgreSQL 15 (the `pg15` target makes that a failure under CI=true).
pytest:
	@if [ -x "$(PG15_BIN)/postgres" ]; then skip=""; else skip="--deselect $(PG15_TEST) --deselect $(PGTAP_TEST)"; \
	  echo "!!! no PostgreSQL 15 in $(PG15_BIN): DESELECTING $(PG15_TEST) and $(PGTAP_TEST). Enable it: make test as root" \
	    "(installs postgresql-15), or apt-get install postgresql-15, or PYSVC_PG15_BIN=/path/to/15/bin make test" >&2; \
	fi; \
	if [ -x "$(PG15_BIN)/postgres" ] && ! { $(PGTAP_READY); }; then skip="$$skip --deselect $(PGTAP_TEST)"; \
	  echo "!!! no pgTAP/plpgsql_check/pg_prove for PostgreSQL 15: DESELECTING $(PGTAP_TEST). Enable it: make test as root" \
	    "(installs $(PGTAP_PACKAGES)), or apt-get install them" >&2; \
	fi; \
	echo "$(BIN)/pytest $$skip $(PYTEST_ARGS)"; PYSVC_PG15_BIN="$(PG15_BIN)" $(BIN)/pytest $$skip $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick

clean:
	-$(BIN)/pysvc stack stop
	rm -rf .pysvc
