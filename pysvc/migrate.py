"""Apply sql/migrations the way the Supabase CLI does, so both agree on what is applied.

Each file `<YYYYMMDDHHMMSS>_<name>.sql` runs in its own transaction and is recorded in
`supabase_migrations.schema_migrations(version, statements, name)`, the CLI's own table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

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


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    row = conn.execute("select to_regclass('supabase_migrations.schema_migrations')").fetchone()
    if row is None or row[0] is None:
        return set()
    return {str(v) for (v,) in conn.execute("select version from supabase_migrations.schema_migrations")}


def apply_pending(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every migration not yet recorded; return those applied, in order."""
    migrations = discover(directory)
    done: list[Migration] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        for ddl in _HISTORY_DDL:
            conn.execute(ddl)
        applied = applied_versions(conn)
        for migration in migrations:
            if migration.version in applied:
                continue
            statements = migration.statements()
            with conn.transaction():
                for statement in statements:
                    try:
                        conn.execute(statement)
                    except psycopg.Error as exc:
                        raise StackError(
                            f"migration {migration.path.name} failed: {exc.diag.message_primary}"
                            f"\n  in: {statement[:200]}",
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


def bootstrap(database_url: str) -> bool:
    """Give a bare PostgreSQL what Supabase provides; return False where it already had it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if has_supabase_roles(conn):
            return False
        with conn.transaction():
            for statement in split_statements(COMPAT_SQL.read_text()):
                conn.execute(statement)
    return True
