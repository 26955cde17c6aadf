"""Set-based seeding and the SQL checks the benchmark needs (duplicates, index swap, clean-up).

Every row the bench writes hangs off an auth.users row whose email ends in `@bench.invalid` and
starts with the run's tag, so an external database can be cleaned by deleting those users.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from typing import NamedTuple

import psycopg
from psycopg import AsyncConnection, sql

ACTIVE_INDEX = "sessions_one_active_per_customer"
DOMAIN = "@bench.invalid"
HISTORY_CHUNK = 100_000


class Pair(NamedTuple):
    """A customer and an unused intake of theirs: what one session creation consumes."""

    customer: uuid.UUID
    intake: uuid.UUID


class Seeder:
    """Hands out fresh customers (and intakes) for one run, tagged so they can be found again."""

    def __init__(self, conn: AsyncConnection[tuple[object, ...]], tag: str) -> None:
        self.conn = conn
        self.tag = tag
        self._batch = 0

    def _prefix(self, kind: str) -> str:
        self._batch += 1
        return f"{self.tag}-{kind}{self._batch}-"

    async def users(self, n: int) -> list[uuid.UUID]:
        cur = await self.conn.execute(
            "insert into auth.users (id, email)"
            " select gen_random_uuid(), %s || g || %s from generate_series(1, %s) g returning id",
            (self._prefix("u"), DOMAIN, n),
        )
        return [_uuid(row[0]) for row in await cur.fetchall()]

    async def pairs(self, n: int, *, per_customer: int = 1, plan: str = "free") -> list[Pair]:
        """n customers with `per_customer` intakes each, ordered customer by customer."""
        cur = await self.conn.execute(
            """
            with u as (
              insert into auth.users (id, email)
              select gen_random_uuid(), %s || g || %s from generate_series(1, %s) g
              returning id
            )
            insert into public.intakes (customer_user_id, plan)
            select u.id, %s from u cross join generate_series(1, %s)
            returning customer_user_id, id
            """,
            (self._prefix("p"), DOMAIN, n, plan, per_customer),
        )
        rows = [Pair(_uuid(r[0]), _uuid(r[1])) for r in await cur.fetchall()]
        return sorted(rows, key=lambda p: p.customer) if per_customer > 1 else rows


    async def pgbench_pairs(self, n: int, *, plan: str = "free") -> int:
        """n fresh customers with one intake each, numbered in PGBENCH_PAIRS, and the sequence
        pgbench's script draws from set to the first of them. Returns how many are now ahead."""
        await self.conn.execute(PGBENCH_SETUP)
        cur = await self.conn.execute(
            f"""
            with u as (
              insert into auth.users (id, email)
              select gen_random_uuid(), %s || g || %s from generate_series(1, %s) g
              returning id
            ), i as (
              insert into public.intakes (customer_user_id, plan)
              select u.id, %s from u
              returning customer_user_id, id
            ), base as (select coalesce(max(n), 0) as n from {PGBENCH_PAIRS})
            insert into {PGBENCH_PAIRS} (n, customer, intake)
            select base.n + row_number() over (), i.customer_user_id, i.id from i, base
            returning n
            """,
            (self._prefix("g"), DOMAIN, n, plan),
        )
        numbers = [int(str(r[0])) for r in await cur.fetchall()]
        await self.conn.execute(f"select setval('{PGBENCH_SEQUENCE}', %s, false)", (min(numbers),))
        return len(numbers)


PGBENCH_SCHEMA = "pysvc_bench"
PGBENCH_PAIRS = f"{PGBENCH_SCHEMA}.pairs"
PGBENCH_SEQUENCE = f"{PGBENCH_SCHEMA}.next_pair"
PGBENCH_SETUP = f"""
create schema if not exists {PGBENCH_SCHEMA};
create table if not exists {PGBENCH_PAIRS} (n bigint primary key, customer uuid not null, intake uuid not null);
create sequence if not exists {PGBENCH_SEQUENCE};
"""


async def drop_pgbench_schema(conn: AsyncConnection[tuple[object, ...]]) -> None:
    await conn.execute(f"drop schema if exists {PGBENCH_SCHEMA} cascade")


def _uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def count_sessions(conn: AsyncConnection[tuple[object, ...]]) -> int:
    cur = await conn.execute("select count(*) from public.sessions")
    row = await cur.fetchone()
    return int(str(row[0])) if row else 0


async def seed_history(
    conn: AsyncConnection[tuple[object, ...]], tag: str, total: int, say: Callable[[str], None],
) -> int:
    """Top the sessions table up to `total` rows with finished sessions (and their participant,
    assignment and event), in set-based chunks. Returns the row count reached."""
    have = await count_sessions(conn)
    began = time.monotonic()
    batch = 0
    while have < total:
        n = min(HISTORY_CHUNK, total - have)
        batch += 1
        await conn.execute(
            """
            with u as (
              insert into auth.users (id, email)
              select gen_random_uuid(), %s || g || %s from generate_series(1, %s) g
              returning id
            ), i as (
              insert into public.intakes (customer_user_id, plan, created_at)
              select id, 'free', now() - interval '30 days' from u
              returning id, customer_user_id
            ), s as (
              insert into public.sessions
                (customer_user_id, type, status, plan, intake_id, metadata, created_at, updated_at)
              select customer_user_id, 'chat', 'completed', 'free', id, '{"source": "bench-history"}',
                now() - interval '30 days', now() - interval '29 days'
              from i
              returning id, customer_user_id
            ), p as (
              insert into public.session_participants (session_id, user_id, role)
              select id, customer_user_id, 'customer' from s
            ), a as (
              insert into public.session_assignments
                (session_id, status, session_type, plan, offered_at, accepted_at)
              select id, 'accepted', 'chat', 'free', now() - interval '30 days', now() - interval '30 days'
              from s
            )
            insert into public.session_events (session_id, event_type, user_id)
            select id, 'created', customer_user_id from s
            """,
            (f"{tag}-h{total}-{batch}-", DOMAIN, n),
        )
        have += n
    say(f"  sessions table at {have:,} rows (seeded in {time.monotonic() - began:.1f}s)")
    await maintenance(conn)
    return await count_sessions(conn)


async def maintenance(conn: AsyncConnection[tuple[object, ...]]) -> None:
    """Fresh statistics and a checkpoint, so a measurement does not pay for the seeding before it."""
    for table in ("auth.users", "public.intakes", "public.sessions", "public.session_participants",
                  "public.session_assignments", "public.session_events"):
        await conn.execute(sql.SQL("vacuum analyze {}").format(sql.SQL(table)))
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):  # external targets may refuse it
        await conn.execute("checkpoint")


async def duplicate_customers(
    conn: AsyncConnection[tuple[object, ...]], customers: Sequence[uuid.UUID] | None = None,
) -> tuple[int, int]:
    """(customers having more than one active session, active sessions beyond the first), among
    `customers` or in the whole table."""
    where = "where is_active" + (" and customer_user_id = any(%s)" if customers is not None else "")
    cur = await conn.execute(
        "select count(*), coalesce(sum(n - 1), 0) from ("
        f" select customer_user_id, count(*) as n from public.sessions {where}"
        " group by customer_user_id having count(*) > 1) d",
        (list(customers),) if customers is not None else None,
    )
    row = await cur.fetchone()
    assert row is not None
    return int(str(row[0])), int(str(row[1]))


async def active_index_definition(conn: AsyncConnection[tuple[object, ...]]) -> tuple[str, str | None] | None:
    cur = await conn.execute(
        "select pg_get_indexdef(c.oid), obj_description(c.oid, 'pg_class') from pg_class c"
        " join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and c.relname = %s",
        (ACTIVE_INDEX,),
    )
    row = await cur.fetchone()
    return (str(row[0]), None if row[1] is None else str(row[1])) if row else None


async def drop_active_index(conn: AsyncConnection[tuple[object, ...]]) -> tuple[str, str | None]:
    """Drop the one-active-session index (the seed's schema had none); returns how to recreate it."""
    definition = await active_index_definition(conn)
    if definition is None:
        raise RuntimeError(f"index public.{ACTIVE_INDEX} not found")
    await conn.execute(sql.SQL("drop index public.{}").format(sql.Identifier(ACTIVE_INDEX)))
    return definition


async def recreate_active_index(conn: AsyncConnection[tuple[object, ...]], definition: tuple[str, str | None]) -> None:
    ddl, comment = definition
    await conn.execute(sql.SQL(ddl))  # pg_get_indexdef's own output
    if comment is not None:
        await conn.execute(
            sql.SQL("comment on index public.{} is {}").format(sql.Identifier(ACTIVE_INDEX), sql.Literal(comment)),
        )


async def delete_sessions_of(conn: AsyncConnection[tuple[object, ...]], customers: Sequence[uuid.UUID]) -> int:
    """Delete the customers' sessions (participants, assignments and events go with them)."""
    cur = await conn.execute("delete from public.sessions where customer_user_id = any(%s)", (list(customers),))
    return cur.rowcount


async def delete_run_sessions(conn: AsyncConnection[tuple[object, ...]], tag: str) -> int:
    """Delete every session of this run's customers (to measure scale from a known table size)."""
    cur = await conn.execute(
        "delete from public.sessions s using auth.users u"
        " where u.id = s.customer_user_id and u.email like %s",
        (f"{tag}-%",),
    )
    return cur.rowcount


async def delete_run_rows(conn: AsyncConnection[tuple[object, ...]], tag: str) -> int:
    """Remove everything this run wrote (its users; the rest cascades). For external targets."""
    await delete_run_sessions(conn, tag)
    cur = await conn.execute("delete from auth.users where email like %s", (f"{tag}-%",))
    return cur.rowcount
