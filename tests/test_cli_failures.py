"""Every failure a user can cause or meet is one line on stderr naming the cause and the fix, a
non-zero exit and no traceback; `--debug` / PYSVC_DEBUG=1 show the traceback. The real CLI, in a
subprocess, against real databases (the session stack, or nothing listening)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pysvc import migrate
from pysvc.errors import StackError
from pysvc.local.stack import PROJECT_ROOT, StackInfo, free_port

PYSVC = [sys.executable, "-m", "pysvc"]
SCRUBBED = ("SUPABASE_URL", "SUPABASE_REST_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_JWT_SECRET",
            "SUPABASE_JWKS_URL", "DATABASE_URL", "PYSVC_DEBUG", "POSTGREST_BIN", "PYSVC_PG_BIN",
            "PYSVC_HOME", "PYSVC_DB_PORT", "PYSVC_REST_PORT", "PYSVC_GATEWAY_PORT")


def pysvc(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SCRUBBED and not k.startswith("STRIPE_")}
    return subprocess.run([*PYSVC, *args], capture_output=True, text=True, timeout=120, check=False,
                          cwd=cwd or PROJECT_ROOT, env={**clean, "PYTHONPATH": str(PROJECT_ROOT), **env})


def one_line_failure(r: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("pysvc: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {"PYSVC_HOME": str(tmp_path / "home"), "PYSVC_DB_PORT": "0", "PYSVC_REST_PORT": "0"}


DOWN = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
BAD_URLS = {
    "database down": (DOWN, "connection refused", "start it"),
    "unresolvable host": ("postgresql://postgres@no-such-host.invalid:5432/postgres", "cannot resolve host",
                          "fix the host"),
    "not a URL": ("notaurl", "not a PostgreSQL URL", "postgresql://USER:PASSWORD@HOST:PORT/DBNAME"),
}


@pytest.mark.parametrize("case", list(BAD_URLS))
def test_stack_start_on_a_bad_database_url(case: str, home: dict[str, str]) -> None:
    url, *fragments = BAD_URLS[case]
    one_line_failure(pysvc("stack", "start", DATABASE_URL=url, **home), *fragments)


@pytest.mark.parametrize("case", list(BAD_URLS))
def test_migrate_on_a_bad_database_url(case: str) -> None:
    url, *fragments = BAD_URLS[case]
    one_line_failure(pysvc("migrate", "--db-url", url), *fragments)
    one_line_failure(pysvc("migrate", DATABASE_URL=url), *fragments)


def test_dev_on_a_database_that_is_down(home: dict[str, str]) -> None:
    one_line_failure(pysvc("dev", "--port", str(free_port()), DATABASE_URL=DOWN, **home), "connection refused")


def test_migrate_with_no_database_at_all(home: dict[str, str]) -> None:
    one_line_failure(pysvc("migrate", **home), "--db-url", "DATABASE_URL", "pysvc stack start")


@pytest.fixture(scope="module")
def password_role(stack_home: Path, stack: StackInfo) -> Iterator[str]:
    """A role that must give its password (the stack itself trusts local connections)."""
    hba = stack_home / "pgdata" / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host all pw_check,authenticator 127.0.0.1/32 scram-sha-256\n" + original)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("create role pw_check login password 'the-right-one'")
        conn.execute("select pg_catalog.pg_reload_conf()")
        yield stack.database_url.replace("postgres@", "pw_check:{}@")
        hba.write_text(original)
        conn.execute("select pg_catalog.pg_reload_conf()")
        conn.execute("drop role pw_check")


def test_wrong_password(password_role: str) -> None:
    assert psycopg.connect(password_role.format("the-right-one")).close() is None  # the right one works
    url = password_role.format("a-wrong-one")
    one_line_failure(pysvc("migrate", "--db-url", url), "password", "pw_check", "fix the password")


def test_wrong_authenticator_password_for_postgrest(password_role: str, stack: StackInfo,
                                                   home: dict[str, str]) -> None:
    line = one_line_failure(pysvc("stack", "start", DATABASE_URL=stack.database_url,
                                  AUTHENTICATOR_PASSWORD="not-its-password", **home),
                            "password authentication failed", "AUTHENTICATOR_PASSWORD")
    assert "could not log in as authenticator" in line


def test_unknown_role(stack: StackInfo, home: dict[str, str]) -> None:
    url = stack.database_url.replace("postgres@", "no_such_role@")
    one_line_failure(pysvc("migrate", "--db-url", url), "no role 'no_such_role'", "fix the user")
    one_line_failure(pysvc("stack", "start", DATABASE_URL=url, **home), "no role 'no_such_role'")


@pytest.fixture
def plain_database(stack: StackInfo) -> Iterator[str]:
    """A database without the auth schema: what a plain PostgreSQL looks like to the migrations."""
    name = f"plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
        yield stack.database_url.rsplit("/", 1)[0] + "/" + name
        conn.execute(f"drop database {name} with (force)")


def _schemas(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {str(r[0]) for r in conn.execute("select nspname from pg_catalog.pg_namespace")}


def test_migrate_on_plain_postgres_names_the_bootstrap_and_changes_nothing(plain_database: str) -> None:
    before = _schemas(plain_database)
    one_line_failure(pysvc("migrate", "--db-url", plain_database), "lacks Supabase's roles",
                     "pysvc migrate --bootstrap")
    assert _schemas(plain_database) == before  # no empty supabase_migrations left behind
    ok = pysvc("migrate", "--bootstrap", "--db-url", plain_database)
    assert ok.returncode == 0, ok.stderr
    assert f"{len(migrate.discover())} migration(s) applied" in ok.stdout
    assert {"auth", "supabase_migrations"} <= _schemas(plain_database)


def test_a_failing_migration_leaves_the_database_as_it_was(plain_database: str, tmp_path: Path) -> None:
    (tmp_path / "20990101000000_good.sql").write_text("create table public.first_one (id int primary key);")
    (tmp_path / "20990101000100_bad.sql").write_text("create table public.second (id int);\nselect nonsense();")
    before = _schemas(plain_database)
    with pytest.raises(StackError) as failed:
        migrate.apply_pending(plain_database, tmp_path, require_supabase=False)
    assert "20990101000100_bad.sql failed, nothing applied" in str(failed.value)
    assert "\n" not in str(failed.value)
    assert _schemas(plain_database) == before
    with psycopg.connect(plain_database) as conn:
        assert conn.execute("select to_regclass('public.first_one')").fetchone() == (None,)


def test_port_taken(home: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        one_line_failure(pysvc("stack", "start", **{**home, "PYSVC_DB_PORT": port}), f"port {port}", "in use",
                         "PYSVC_DB_PORT")
        one_line_failure(pysvc("serve", "--port", port), f"127.0.0.1:{port}", "another --port")
        one_line_failure(pysvc("dev", "--port", port, **home), f"127.0.0.1:{port}", "a `pysvc dev` (`make run`)",
                         f"make run PORT={int(port) + 1}", f"pysvc dev --port {int(port) + 1}")


def test_missing_postgrest_binary(home: dict[str, str]) -> None:
    one_line_failure(pysvc("stack", "start", POSTGREST_BIN="/nonexistent/postgrest", **home),
                     "POSTGREST_BIN=/nonexistent/postgrest", "fix or unset")


def test_missing_npm_ci(tmp_path: Path, home: dict[str, str]) -> None:
    """A checkout without node_modules: the project copied, without them."""
    assert shutil.which("postgrest") is None
    for part in ("pysvc", "sql"):
        shutil.copytree(PROJECT_ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    r = pysvc("stack", "start", cwd=tmp_path, PYTHONPATH=str(tmp_path), **home)
    one_line_failure(r, "PostgREST not found", "npm ci")


def test_missing_postgres_binaries(home: dict[str, str]) -> None:
    one_line_failure(pysvc("stack", "start", PYSVC_PG_BIN="/nonexistent/bin", **home),
                     "/nonexistent/bin", "PYSVC_PG_BIN")


@pytest.mark.parametrize("value", ["abc", "70000", "-1"])
def test_bad_port_setting(value: str, home: dict[str, str]) -> None:
    one_line_failure(pysvc("stack", "start", **{**home, "PYSVC_REST_PORT": value}), "PYSVC_REST_PORT", repr(value))


def test_serve_with_missing_settings(tmp_path: Path) -> None:
    line = one_line_failure(pysvc("serve", "--port", str(free_port()), cwd=tmp_path), "SUPABASE_SERVICE_ROLE_KEY")
    assert "settings" in line


def test_serve_without_settings_names_the_way_to_the_local_stack(tmp_path: Path) -> None:
    one_line_failure(pysvc("serve", "--port", str(free_port()), cwd=tmp_path),
                     "`pysvc dev`", 'eval "$(pysvc stack env)"')


def test_unresolvable_listen_host() -> None:
    one_line_failure(pysvc("serve", "--host", "no-such-host.invalid"), "cannot resolve --host")


def test_stack_env_when_not_running(home: dict[str, str]) -> None:
    one_line_failure(pysvc("stack", "env", **home), "not running", "pysvc stack start")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(how: str) -> None:
    args, env = (["--debug"], {}) if how == "flag" else ([], {"PYSVC_DEBUG": "1"})
    r = pysvc(*args, "migrate", "--db-url", DOWN, **env)
    assert r.returncode == 1
    assert "Traceback" in r.stderr
    assert r.stderr.splitlines()[-1].startswith("pysvc: no PostgreSQL answers")
    after = pysvc("migrate", "--db-url", DOWN, "--debug")  # after the command too
    assert "Traceback" in after.stderr


def test_migrate_uses_the_stacks_database_while_only_its_gateway_is_down(tmp_path: Path) -> None:
    env = {"PYSVC_HOME": str(tmp_path), "PYSVC_DB_PORT": "0", "PYSVC_REST_PORT": "0", "PYSVC_GATEWAY_PORT": "0"}
    assert pysvc("stack", "start", **env).returncode == 0
    try:
        state = json.loads((tmp_path / "state.json").read_text())
        os.kill(state["gateway_pid"], signal.SIGKILL)
        r = pysvc("migrate", **env)
        assert r.returncode == 0, r.stderr
        assert "0 migration(s) applied" in r.stdout
        env_cmd = pysvc("stack", "env", **env)  # the stack as a whole is not running
        one_line_failure(env_cmd, "not running", "pysvc stack start")
    finally:
        pysvc("stack", "stop", **env)
