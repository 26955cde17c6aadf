"""Apply sql/migrations the way the Supabase CLI does, so both agree on what is applied.

Each file `<YYYYMMDDHHMMSS>_<name>.sql` is recorded in
`supabase_migrations.schema_migrations(version, statements, name)`, the CLI's own table. All
pending files run in one transaction, so a failure leaves the database as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pysvc.errors import StackError

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
COMPAT_SQL = SQL_DIR / "local" / "supabase_compat.sql"

_MIGRATION_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>.+)\.sql$")

# The Supabase CLI creates exactly this (pkg/migration/history.go).
_HISTORY_DDL = (
    "create schema if not exists supabase_migrations",
    "create table if not exists supabase_migrations.schema_migrations (version text not null primary key)",
    "alter table supabase_migrations.schema_migrations add column if not exists statements text[]",
    "alter table supabase_migrations.schema_migrations add column if not exists name text",
)


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    def statements(self) -> list[str]:
        return split_statements(self.path.read_text())


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise StackError(
                f"{path.name}: migration files are named <YYYYMMDDHHMMSS>_<name>.sql",
            )
        found.append(Migration(match["version"], match["name"], path))
    return found


_DOLLAR_TAG = re.compile(r"\$[A-Za-z_]*\$")


def split_statements(sql: str) -> list[str]:
    """Split a script on top-level semicolons, keeping quotes, comments and $$ bodies whole.

    Statements come out as the Supabase CLI records them: trimmed, without the semicolon.
    """
    return [s for s in (chunk.strip() for chunk in _chunks(sql)) if s and not _only_comments(s)]


def _chunks(sql: str) -> Iterator[str]:
    start = i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif c in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:
                        end += 2
                        continue
                    break
                end += 1
            i = end + 1
        elif c == "$" and (tag := _DOLLAR_TAG.match(sql, i)):
            end = sql.find(tag.group(), tag.end())
            i = n if end == -1 else end + len(tag.group())
        elif c == ";":
            yield sql[start:i]
            start = i = i + 1
        else:
            i += 1
    yield sql[start:]


def _only_comments(statement: str) -> bool:
    stripped = re.sub(r"--[^\n]*", "", statement)
    stripped = re.sub(r"/\*.*?\*/", "", stripped, flags=re.S)
    return stripped.strip(" \t\r\n;") == ""


_FUNCTION_STATEMENT = re.compile(
    r"(?P<kind>create\s+(?:or\s+replace\s+)?function|comment\s+on\s+function)"
    r"\s+(?P<name>[a-z_][a-z_0-9]*\.[a-z_][a-z_0-9]*)\s*\(",
    re.I,
)
_LEADING_COMMENTS = re.compile(r"\A(?:\s*--[^\n]*(?:\n|\Z))*\s*")


@dataclass(frozen=True)
class FunctionStatement:
    """A `create function` or `comment on function` statement: its text without leading comments."""

    name: str
    kind: Literal["create", "comment"]
    text: str


def function_statements(sql: str) -> list[FunctionStatement]:
    """The script's statements that create or comment on a function, in order."""
    found = []
    for statement in split_statements(sql):
        text = _LEADING_COMMENTS.sub("", statement, count=1)
        if match := _FUNCTION_STATEMENT.match(text):
            kind: Literal["create", "comment"] = "create" if match["kind"].lower().startswith("create") else "comment"
            found.append(FunctionStatement(match["name"].lower(), kind, text))
    return found


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    row = conn.execute("select to_regclass('supabase_migrations.schema_migrations')").fetchone()
    if row is None or row[0] is None:
        return set()
    return {str(v) for (v,) in conn.execute("select version from supabase_migrations.schema_migrations")}


def connect(database_url: str, *, timeout: int = 10) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection, or a StackError naming the cause and the fix in one line."""
    try:
        return psycopg.connect(database_url, autocommit=True, connect_timeout=timeout)
    except psycopg.Error as exc:
        raise StackError(explain_connect_error(exc, database_url)) from exc


def explain_connect_error(exc: BaseException, database_url: str) -> str:
    """One line: why PostgreSQL at `database_url` could not be reached, and what to do about it."""
    text = " ".join(str(exc).split())
    low = text.lower()
    if isinstance(exc, psycopg.ProgrammingError) or "invalid connection option" in low or "missing \"=\"" in low:
        return (f"not a PostgreSQL URL: {_redact(database_url)!r}: "
                "use postgresql://USER:PASSWORD@HOST:PORT/DBNAME")
    try:
        info = conninfo_to_dict(database_url)
    except psycopg.Error:
        info = {}
    host = str(info.get("host") or "localhost")
    where = f"{host}:{info.get('port') or 5432}"
    user = str(info.get("user") or "(default user)")
    if "could not translate host name" in low or "name or service not known" in low \
            or "failed to resolve host" in low or "temporary failure in name resolution" in low:
        return f"cannot resolve host {host!r}: fix the host in the database URL (or your DNS)"
    if "connection refused" in low:
        return (f"no PostgreSQL answers at {where} (connection refused): start it, "
                "or fix the host/port in the database URL")
    if "password authentication failed" in low or "no password supplied" in low:
        return f"PostgreSQL at {where} refused the password for role {user!r}: fix the password in the database URL"
    if "role" in low and "does not exist" in low:
        return f"PostgreSQL at {where} has no role {user!r}: fix the user in the database URL"
    if "database" in low and "does not exist" in low:
        return f"PostgreSQL at {where} has no database {info.get('dbname')!r}: fix the database name in the URL"
    if "timeout" in low or "timed out" in low:
        return f"timed out connecting to PostgreSQL at {where}: check the host, port and firewall"
    return f"cannot connect to PostgreSQL at {where}: {text}"


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


MISSING_BOOTSTRAP = (
    "this database lacks Supabase's roles (anon, authenticated, service_role, authenticator) and the auth "
    "schema, so it is a plain PostgreSQL, not Supabase: add them with `pysvc migrate --bootstrap` "
    "(sql/local/supabase_compat.sql; never needed on Supabase), then migrate"
)


def apply_pending(
    database_url: str, directory: Path = MIGRATIONS_DIR, *, require_supabase: bool = True,
) -> list[Migration]:
    """Apply every migration not yet recorded; return those applied, in order.

    All pending migrations and the history table go in ONE transaction (under an advisory lock):
    a failure leaves the database exactly as it was, with nothing half-applied and no empty
    `supabase_migrations` schema. With `require_supabase`, a database without Supabase's roles
    and `auth` schema is refused before anything runs, naming the fix.
    """
    migrations = discover(directory)
    done: list[Migration] = []
    with connect(database_url) as conn:
        applied = applied_versions(conn)
        pending = [m for m in migrations if m.version not in applied]
        if not pending:
            return []
        if require_supabase and not has_supabase_roles(conn):
            raise StackError(MISSING_BOOTSTRAP)
        with conn.transaction():
            conn.execute("select pg_catalog.pg_advisory_xact_lock(hashtext('supabase_migrations'))")
            for ddl in _HISTORY_DDL:
                conn.execute(ddl)
            applied = applied_versions(conn)  # another migrator may have won the lock first
            for migration in pending:
                if migration.version in applied:
                    continue
                statements = migration.statements()
                for statement in statements:
                    try:
                        conn.execute(statement)
                    except psycopg.Error as exc:
                        message = exc.diag.message_primary or str(exc).strip()
                        where = " ".join(statement.split())[:120]
                        raise StackError(
                            f"migration {migration.path.name} failed, nothing applied: {message} (in: {where})",
                        ) from exc
                conn.execute(
                    "insert into supabase_migrations.schema_migrations (version, name, statements)"
                    " values (%s, %s, %s)",
                    (migration.version, migration.name, statements),
                )
                done.append(migration)
            if done:
                conn.execute("notify pgrst, 'reload schema'")
    return done


def has_supabase_roles(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(
        "select count(*) = 4 and to_regclass('auth.users') is not null from pg_catalog.pg_roles"
        " where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')",
    ).fetchone()
    return bool(row and row[0])


def bootstrap(database_url: str, *, refresh: bool = False) -> bool:
    """Give a bare PostgreSQL what Supabase provides; return False where it already had it.

    `refresh` re-applies the (idempotent) script where the roles exist, so a local database
    bootstrapped by an older release gets what was added since (the roles' search_path). Never
    on a real Supabase database: there, Supabase's own setup is the truth.
    """
    with connect(database_url) as conn:
        present = has_supabase_roles(conn)
        if present and not refresh:
            return False
        with conn.transaction():
            for statement in split_statements(COMPAT_SQL.read_text()):
                try:
                    conn.execute(statement)
                except psycopg.Error as exc:
                    message = exc.diag.message_primary or str(exc).strip()
                    raise StackError(
                        f"the Supabase-compat bootstrap failed, nothing applied: {message}"
                        " (it needs a superuser, e.g. postgres, in the database URL)",
                    ) from exc
    return not present
