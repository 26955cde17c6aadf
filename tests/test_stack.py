"""The local stack: start/stop, the compat bootstrap, CLI-compatible migrations, PostgREST auth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from pysvc import migrate
from pysvc.errors import StackError
from pysvc.local.stack import PROJECT_ROOT, Stack, StackInfo, find_supabase_cli, mint_key


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_supabase_cli()), *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )


def test_stack_starts_and_stops_cleanly_twice_in_a_row(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("twice")
    stack = Stack(home, db_port=0, rest_port=0, say=lambda _: None)
    for _ in range(2):
        info = stack.start()
        assert httpx.get(info.rest_url, headers={"Authorization": f"Bearer {info.anon_key}"}).status_code == 200
        assert stack.running() is not None
        assert stack.stop() is True
        assert stack.running() is None
        with pytest.raises(httpx.ConnectError):
            httpx.get(info.rest_url)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(info.database_url, connect_timeout=2)


def test_starting_a_running_stack_returns_it_unchanged(stack_home: Path, stack: StackInfo) -> None:
    again = Stack(stack_home, db_port=0, rest_port=0, say=lambda _: None).start()
    assert again == stack


def test_stack_env_file_lists_the_endpoints_and_keys(stack_home: Path, stack: StackInfo) -> None:
    lines = dict(line.split("=", 1) for line in (stack_home / "stack.env").read_text().splitlines())
    assert lines == stack.env()
    assert set(lines) >= {
        "DATABASE_URL", "SUPABASE_URL", "SUPABASE_REST_URL", "SUPABASE_JWT_SECRET",
        "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_ANON_KEY", "SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY",
    }


def test_stale_state_file_is_cleared_with_a_message(tmp_path: Path) -> None:
    said: list[str] = []
    stack = Stack(tmp_path, db_port=0, rest_port=0, say=said.append)
    stack.state_file.write_text('{"postgrest_pid": 999999, "postgres_pid": null}')
    assert stack.running() is None
    info = stack.start()
    try:
        assert any("stale" in line for line in said)
        assert stack.running() == info
    finally:
        stack.stop()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} .* in use"):
            Stack(tmp_path, db_port=port, rest_port=0, say=lambda _: None).start()


def test_bootstrap_is_skipped_where_supabase_roles_exist(stack: StackInfo) -> None:
    assert migrate.bootstrap(stack.database_url) is False


def test_bootstrap_applied_twice_changes_nothing(stack: StackInfo) -> None:
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        before = conn.execute("select count(*) from pg_catalog.pg_default_acl").fetchone()
        with conn.transaction():
            for statement in migrate.split_statements(migrate.COMPAT_SQL.read_text()):
                conn.execute(statement)
        after = conn.execute("select count(*) from pg_catalog.pg_default_acl").fetchone()
        roles = conn.execute(
            "select rolname, rolbypassrls, rolcanlogin from pg_catalog.pg_roles"
            " where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')"
            " order by rolname",
        ).fetchall()
    assert before == after
    assert roles == [
        ("anon", False, False),
        ("authenticated", False, False),
        ("authenticator", False, True),
        ("service_role", True, False),
    ]


SUPABASE_ROLES = ("anon", "authenticated", "service_role", "authenticator", "postgres")


def _search_paths(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, list[str]]:
    rows = conn.execute(
        "select r.rolname, s.setconfig from pg_catalog.pg_db_role_setting s"
        " join pg_catalog.pg_roles r on r.oid = s.setrole where s.setdatabase = 0",
    ).fetchall()
    return {str(name): [c for c in config if c.startswith("search_path=")] for name, config in rows}


def test_the_supabase_roles_get_supabases_search_path(stack: StackInfo) -> None:
    with psycopg.connect(stack.database_url) as conn:
        paths = _search_paths(conn)
    for role in SUPABASE_ROLES:
        assert paths.get(role) == ['search_path="$user", public, extensions'], (role, paths.get(role))


def test_an_extension_in_schema_extensions_is_found_unqualified(stack: StackInfo) -> None:
    with psycopg.connect(stack.database_url) as conn:
        conn.execute("create extension pg_trgm with schema extensions")
        try:
            row = conn.execute("select similarity('brakes', 'brake') > 0").fetchone()
        finally:
            conn.rollback()
    assert row == (True,)


def test_bootstrap_refresh_gives_a_database_bootstrapped_before_the_search_path(tmp_path: Path) -> None:
    stack = Stack(tmp_path, db_port=0, rest_port=0, gateway=False, say=lambda _: None)
    info = stack.start()
    try:
        with psycopg.connect(info.database_url, autocommit=True) as conn:
            conn.execute("alter role anon reset search_path")
        assert migrate.bootstrap(info.database_url, refresh=True) is False  # the roles were there
        with psycopg.connect(info.database_url) as conn:
            assert _search_paths(conn).get("anon") == ['search_path="$user", public, extensions']
    finally:
        stack.stop()


def test_auth_helpers_read_request_jwt_claims_like_supabase(stack: StackInfo) -> None:
    with psycopg.connect(stack.database_url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "select set_config('request.jwt.claims', %s, true)",
            ('{"sub": "4d7f9a4e-5f7b-4c53-9d55-0f6f0d8f4a11", "role": "authenticated"}',),
        )
        row = conn.execute("select auth.uid()::text, auth.role(), auth.jwt() ->> 'role'").fetchone()
    assert row == ("4d7f9a4e-5f7b-4c53-9d55-0f6f0d8f4a11", "authenticated", "authenticated")


def test_auth_users_accepts_just_id_and_email(db: psycopg.Connection[dict[str, Any]]) -> None:
    row = db.execute(
        "insert into auth.users (id, email) values (gen_random_uuid(), 'x@example.com') returning id",
    ).fetchone()
    assert row is not None


def test_migrations_are_recorded_as_the_supabase_cli_records_them(
    db: psycopg.Connection[dict[str, Any]],
) -> None:
    rows = db.execute(
        "select version, name, statements from supabase_migrations.schema_migrations order by version",
    ).fetchall()
    files = migrate.discover()
    assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in files]
    assert rows[0]["statements"] == files[0].statements()


def test_supabase_cli_sees_every_migration_as_applied(stack: StackInfo) -> None:
    up = _cli("migration", "up", "--yes", f"--remote={stack.database_url}")
    assert up.returncode == 0, up.stderr
    assert "up to date" in (up.stdout + up.stderr).lower()
    listing = _cli("migration", "list", f"--remote={stack.database_url}")
    assert listing.returncode == 0, listing.stderr
    assert "deprecated" not in (up.stderr + listing.stderr).lower()
    for m in migrate.discover():
        line = next(ln for ln in listing.stdout.splitlines() if m.version in ln)
        assert line.count(m.version) == 2, line  # local and remote columns


def test_migrations_are_applied_once(stack: StackInfo) -> None:
    assert migrate.apply_pending(stack.database_url) == []


def test_split_statements_keeps_quotes_comments_and_dollar_bodies_whole() -> None:
    sql = (
        "-- lead\ncreate table t (s text default 'a;b');\n"
        "/* c; */ create function f() returns int language plpgsql as $fn$\n"
        "begin -- x;\n return 1; end $fn$;\n"
        "comment on table t is 'it''s; fine';\n-- trailing comment\n"
    )
    assert migrate.split_statements(sql) == [
        "-- lead\ncreate table t (s text default 'a;b')",
        "/* c; */ create function f() returns int language plpgsql as $fn$\nbegin -- x;\n return 1; end $fn$",
        "comment on table t is 'it''s; fine'",
    ]


def test_postgrest_accepts_the_service_role_key(rest: httpx.Client, service_key: str) -> None:
    r = rest.get("/plans?select=code", headers={"Authorization": f"Bearer {service_key}"})
    assert r.status_code == 200
    assert {"free", "standard"} <= {p["code"] for p in r.json()}


def test_postgrest_rejects_a_token_signed_with_another_secret(rest: httpx.Client) -> None:
    forged = mint_key(secrets.token_urlsafe(48), "service_role")
    r = rest.get("/plans", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    assert r.json()["code"] == "PGRST301"


def test_database_advisors_pass_on_the_migrated_schema(stack: StackInfo) -> None:
    result = _cli(
        "db", "advisors", f"--remote={stack.database_url}", "--type", "all", "--fail-on", "warn",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No issues found" in result.stdout + result.stderr
    assert "deprecated" not in result.stderr.lower()


def test_database_advisors_catch_a_table_without_rls(stack: StackInfo) -> None:
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("create table public.advisor_probe (id int primary key)")
        try:
            result = _cli(
                "db", "advisors", f"--remote={stack.database_url}", "--type", "all",
                "--fail-on", "warn",
            )
        finally:
            conn.execute("drop table public.advisor_probe")
    assert result.returncode != 0
    assert "rls_disabled_in_public" in result.stdout


def test_migrations_apply_on_postgres_15(tmp_path: Path) -> None:
    pg15 = Path(os.environ.get("PYSVC_PG15_BIN") or "/usr/lib/postgresql/15/bin")
    assert (pg15 / "postgres").exists(), (
        f"no PostgreSQL 15 in {pg15}: install it (Debian: apt-get install postgresql-15; `make test` does as root),"
        " or set PYSVC_PG15_BIN to its bin/ directory; without root `make test` deselects this test"
    )
    stack = Stack(tmp_path, db_port=0, rest_port=0, pg_bin=pg15, say=lambda _: None)
    info = stack.start()
    try:
        with psycopg.connect(info.database_url) as conn:
            version = conn.execute("show server_version_num").fetchone()
            applied = conn.execute("select count(*) from supabase_migrations.schema_migrations").fetchone()
        assert version is not None and str(version[0]).startswith("15")
        assert applied == (len(migrate.discover()),)
        r = httpx.get(f"{info.rest_url}/plans", headers={"Authorization": f"Bearer {info.anon_key}"})
        assert r.status_code == 200 and len(r.json()) >= 6
    finally:
        stack.stop()


def _scram_matches(verifier: str, password: str) -> bool:
    """Does a PostgreSQL SCRAM-SHA-256 verifier belong to this password? (RFC 5802 / 7677)"""
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return method == "SCRAM-SHA-256" and base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key


def test_authenticator_password_from_the_environment_is_the_one_set_and_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTHENTICATOR_PASSWORD", "chosen-by-the-operator")
    stack = Stack(tmp_path, db_port=0, rest_port=0, say=lambda _: None)
    info = stack.start()
    try:
        with psycopg.connect(info.database_url) as conn:
            row = conn.execute(
                "select rolpassword from pg_catalog.pg_authid where rolname = 'authenticator'",
            ).fetchone()
        assert row is not None and _scram_matches(str(row[0]), "chosen-by-the-operator")
        assert not _scram_matches(str(row[0]), "some-other-password")
        r = httpx.get(f"{info.rest_url}/plans", headers={"Authorization": f"Bearer {info.anon_key}"})
        assert r.status_code == 200
    finally:
        stack.stop()


# -- the stack heals -------------------------------------------------------------------------

def _pysvc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pysvc", *args], capture_output=True, text=True, env=env,
                          cwd=PROJECT_ROOT, timeout=120, check=False)


def _answers(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False


def test_stack_start_restarts_only_what_is_down_on_the_same_ports(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PYSVC_HOME=str(tmp_path), PYSVC_DB_PORT="0", PYSVC_REST_PORT="0", PYSVC_GATEWAY_PORT="0")
    first = _pysvc(env, "stack", "start")
    assert first.returncode == 0, first.stderr
    try:
        before = json.loads((tmp_path / "state.json").read_text())
        os.kill(before["postgrest_pid"], signal.SIGKILL)
        os.kill(before["gateway_pid"], signal.SIGKILL)
        killed = time.monotonic()
        while Path(f"/proc/{before['postgrest_pid']}").exists() and "Z" not in Path(
                f"/proc/{before['postgrest_pid']}/stat").read_text().rsplit(")", 1)[-1][:3]:
            time.sleep(0.01)  # dead (a zombie until init reaps it)

        status = _pysvc(env, "stack", "status")
        assert status.returncode == 1, status.stdout
        assert status.stdout.startswith("degraded")
        assert "PostgREST   down" in status.stdout and "gateway     down" in status.stdout
        assert "PostgreSQL  up" in status.stdout

        again = _pysvc(env, "stack", "start")
        assert again.returncode == 0, again.stderr
        assert "restarting what is down: PostgREST, gateway" in again.stdout
        rest = f"http://127.0.0.1:{before['rest_port']}"
        assert _answers(f"{rest}/plans", 5 - (time.monotonic() - killed)), "PostgREST not back within 5 s"
        after = json.loads((tmp_path / "state.json").read_text())
        assert after["postgres_pid"] == before["postgres_pid"]  # PostgreSQL untouched
        assert after["postgrest_pid"] != before["postgrest_pid"]
        for key in ("db_port", "rest_port", "admin_port", "gateway_port", "rest_url", "supabase_url"):
            assert after[key] == before[key], key
        assert _answers(f"{after['supabase_url']}/rest/v1/plans", 1)
        assert _pysvc(env, "stack", "status").stdout.startswith("running")
    finally:
        _pysvc(env, "stack", "stop")


def test_a_zombie_counts_as_dead_and_is_reaped_when_it_is_ours() -> None:
    from pysvc.local.stack import _pid_alive

    child = subprocess.Popen(["sleep", "30"])
    assert _pid_alive(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while "Z" not in Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1][:3]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not _pid_alive(child.pid)
    assert not Path(f"/proc/{child.pid}").exists()  # reaped
    child.returncode = -9  # tell Popen it is gone


# -- the gateway: SUPABASE_URL ---------------------------------------------------------------

def test_gateway_serves_postgrest_under_rest_v1_with_the_anon_key(stack: StackInfo) -> None:
    direct = httpx.get(f"{stack.rest_url}/plans?select=code&order=code",
                       headers={"Authorization": f"Bearer {stack.anon_key}"})
    for headers in ({"apikey": stack.anon_key},
                    {"apikey": stack.anon_key, "Authorization": f"Bearer {stack.anon_key}"},
                    {"apikey": stack.publishable_key}):
        r = httpx.get(f"{stack.supabase_url}/rest/v1/plans?select=code&order=code", headers=headers)
        assert r.status_code == 200, (headers, r.text)
        assert r.json() == direct.json()
        assert {"free", "standard"} <= {p["code"] for p in r.json()}


def test_gateway_passes_prefer_status_and_errors_through(stack: StackInfo) -> None:
    r = httpx.get(f"{stack.supabase_url}/rest/v1/plans?select=code",
                  headers={"apikey": stack.anon_key, "Prefer": "count=exact", "Range": "0-1"})
    assert r.status_code == 206
    assert r.headers["content-range"].startswith("0-1/")
    assert r.headers.get("server", "").startswith("postgrest")  # PostgREST's own headers, not doubled
    missing = httpx.post(f"{stack.supabase_url}/rest/v1/rpc/no_such_function", json={},
                         headers={"apikey": stack.secret_key})
    assert missing.status_code == 404
    assert missing.json()["code"] == "PGRST202"
    refused = httpx.get(f"{stack.supabase_url}/rest/v1/plans", headers={"apikey": "sb_secret_not-this-project"})
    assert refused.status_code == 401
    for root in ("/rest/v1/", "/rest/v1"):  # PostgREST's OpenAPI description, as on Supabase
        assert httpx.get(stack.supabase_url + root, headers={"apikey": stack.anon_key}).status_code == 200


def test_gateway_serves_a_jwks_that_verifies_the_stacks_user_tokens(stack: StackInfo) -> None:
    user = uuid.uuid4()
    token = stack.user_token(user)
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": stack.jwt_kid, "typ": "JWT"}
    jwks = httpx.get(stack.jwks_url).json()
    assert [k["kid"] for k in jwks["keys"]] == [stack.jwt_kid]
    assert all("d" not in k for k in jwks["keys"])  # public parts only
    key = jwt.PyJWKClient(stack.jwks_url).get_signing_key_from_jwt(token).key
    claims = jwt.decode(token, key, algorithms=["ES256"], audience="authenticated")
    assert claims["sub"] == str(user) and claims["role"] == "authenticated"
    stranger = jwt.encode(claims, _other_ec_key(), algorithm="ES256", headers={"kid": stack.jwt_kid})
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(stranger, key, algorithms=["ES256"], audience="authenticated")


def _other_ec_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def test_postgrest_accepts_es256_user_tokens_like_supabase(stack: StackInfo) -> None:
    for algorithm in ("ES256", "HS256"):
        token = stack.user_token(uuid.uuid4(), algorithm=algorithm)
        r = httpx.get(f"{stack.supabase_url}/rest/v1/plans?select=code",
                      headers={"apikey": stack.anon_key, "Authorization": f"Bearer {token}"})
        assert r.status_code == 200, (algorithm, r.text)


def test_postgrest_runs_with_the_jwt_cache_and_the_pool_settings(stack: StackInfo) -> None:
    environ = Path(f"/proc/{stack.postgrest_pid}/environ").read_bytes().split(b"\0")
    settings = dict(item.decode().split("=", 1) for item in environ if item.startswith(b"PGRST_"))
    assert settings["PGRST_JWT_CACHE_MAX_LIFETIME"] == os.environ.get("PGRST_JWT_CACHE_MAX_LIFETIME", "3600")
    assert settings["PGRST_DB_PREPARED_STATEMENTS"] == "true"
    assert settings["PGRST_DB_POOL"] == os.environ.get("PGRST_DB_POOL", "10")


# -- make test and PostgreSQL 15 -------------------------------------------------------------

def _make(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`make` as a user who is not root (a stand-in `id` first on PATH), so nothing is installed."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "id").write_text("#!/bin/sh\necho 1000\n")
    (fake / "id").chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "PYSVC_PG15_BIN", "MAKEFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "-s", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                          check=False, env={**base, "PATH": f"{fake}:{os.environ['PATH']}", **env})


def test_make_test_without_postgres_15_deselects_its_test_loudly(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-pg15")
    assert _make(tmp_path, "pg15", PYSVC_PG15_BIN=missing).returncode == 0
    run = _make(tmp_path, "pytest", PYSVC_PG15_BIN=missing,
                PYTEST_ARGS="--collect-only -q tests/test_stack.py")
    assert run.returncode == 0, run.stderr
    loud = [line for line in run.stderr.splitlines() if line.startswith("!!!")]
    assert len(loud) == 1 and "DESELECTING" in loud[0] and "PYSVC_PG15_BIN" in loud[0], run.stderr
    assert "1 deselected" in run.stdout
    collected = [line for line in run.stdout.splitlines() if line.startswith("tests/")]
    assert collected and not any(line.endswith("::test_migrations_apply_on_postgres_15") for line in collected)


def test_make_test_under_ci_fails_without_postgres_15(tmp_path: Path) -> None:
    run = _make(tmp_path, "pg15", PYSVC_PG15_BIN=str(tmp_path / "no-pg15"), CI="true")
    assert run.returncode != 0
    assert "CI: no PostgreSQL 15" in run.stderr


def test_make_test_honours_pysvc_pg15_bin(tmp_path: Path) -> None:
    pg15 = tmp_path / "pg15" / "bin"
    pg15.mkdir(parents=True)
    (pg15 / "postgres").write_text("#!/bin/sh\n")
    (pg15 / "postgres").chmod(0o755)
    run = _make(tmp_path, "pytest", PYSVC_PG15_BIN=str(pg15), CI="true",
                PYTEST_ARGS="--collect-only -q tests/test_stack.py::test_migrations_apply_on_postgres_15")
    assert run.returncode == 0, run.stderr
    assert "DESELECTING" not in run.stderr
    assert "1 test collected" in run.stdout


def _pg15_without_pgtap(tmp_path: Path) -> Path:
    """A stand-in PostgreSQL 15 whose share directory has no pgTAP or plpgsql_check."""
    pg15 = tmp_path / "pg15" / "bin"
    pg15.mkdir(parents=True)
    (pg15 / "postgres").write_text("#!/bin/sh\n")
    (pg15 / "pg_config").write_text(f"#!/bin/sh\necho {tmp_path / 'pg15' / 'share'}\n")
    for name in ("postgres", "pg_config"):
        (pg15 / name).chmod(0o755)
    return pg15


def test_make_test_without_pgtap_deselects_the_pgtap_tests_loudly(tmp_path: Path) -> None:
    pg15 = str(_pg15_without_pgtap(tmp_path))
    assert _make(tmp_path, "pgtap", PYSVC_PG15_BIN=pg15).returncode == 0
    run = _make(tmp_path, "pytest", PYSVC_PG15_BIN=pg15,
                PYTEST_ARGS="--collect-only -q tests/test_supabase_tools.py tests/test_db_types.py")
    assert run.returncode == 0, run.stderr
    loud = [line for line in run.stderr.splitlines() if line.startswith("!!!")]
    assert len(loud) == 1 and "DESELECTING tests/test_supabase_tools.py" in loud[0], run.stderr
    assert "postgresql-15-pgtap" in loud[0]
    collected = [line for line in run.stdout.splitlines() if line.startswith("tests/")]
    assert collected and not any(line.startswith("tests/test_supabase_tools.py") for line in collected)


def test_make_test_under_ci_fails_without_pgtap(tmp_path: Path) -> None:
    run = _make(tmp_path, "pgtap", PYSVC_PG15_BIN=str(_pg15_without_pgtap(tmp_path)), CI="true")
    assert run.returncode != 0
    assert "CI: pgTAP, plpgsql_check or pg_prove missing" in run.stderr
