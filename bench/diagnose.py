"""Where the database's time goes (pg_stat_statements, statements inside the function included) and
how the function's lookups are planned (EXPLAIN ANALYZE)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg import AsyncConnection

from bench.seed import Pair


async def ensure_pg_stat_statements(conn: AsyncConnection[tuple[object, ...]]) -> bool:
    try:
        await conn.execute("create extension if not exists pg_stat_statements")
        await conn.execute("select pg_stat_statements_reset()")
    except psycopg.Error:
        return False
    return True


async def set_track_all(conn: AsyncConnection[tuple[object, ...]], on: bool) -> None:
    """Track the statements inside create_session_record too (own stack only)."""
    value = "'all'" if on else "default"
    await conn.execute(f"alter system set pg_stat_statements.track = {value}")
    await conn.execute("select pg_reload_conf()")
    await asyncio.sleep(0.3)  # let every backend see the reload


async def statement_profile(
    conn: AsyncConnection[tuple[object, ...]], sessions: int, *, limit: int = 8, like: str = "%",
) -> dict[str, Any]:
    """Where the database spent its execution time since the last reset, per created session."""
    cur = await conn.execute(
        """
        select regexp_replace(query, '\\s+', ' ', 'g'), calls, total_exec_time, mean_exec_time, max_exec_time,
               toplevel
        from pg_stat_statements
        where dbid = (select oid from pg_database where datname = current_database())
          and query not ilike '%%pg_stat_statements%%' and query ilike %s
        order by total_exec_time desc limit %s
        """,
        (like, limit),
    )
    rows = await cur.fetchall()
    statements = [
        {
            "query": str(r[0])[:160],
            "calls": int(str(r[1])),
            "total_ms": round(float(str(r[2])), 1),
            "mean_ms": round(float(str(r[3])), 3),
            "max_ms": round(float(str(r[4])), 2),
            "toplevel": bool(r[5]),
            "ms_per_session": round(float(str(r[2])) / sessions, 3) if sessions else None,
        }
        for r in rows
    ]
    return {"sessions": sessions, "statements": statements}


LOOKUPS = {
    "active session of a customer": (
        "select s.* from public.sessions s where s.customer_user_id = %(customer)s and s.is_active"
    ),
    "intake of a customer": (
        "select i.* from public.intakes i where i.id = %(intake)s and i.customer_user_id = %(customer)s"
    ),
    "intake already used": "select 1 from public.sessions s where s.intake_id = %(intake)s",
    "plan": "select p.* from public.plans p where p.code = 'free' and p.active",
}


async def explain_lookups(conn: AsyncConnection[tuple[object, ...]], ticket: Pair) -> dict[str, list[str]]:
    """EXPLAIN ANALYZE of the lookups create_session_record makes before it writes."""
    plans: dict[str, list[str]] = {}
    params = {"customer": ticket.customer, "intake": ticket.intake}
    for name, query in LOOKUPS.items():
        cur = await conn.execute(f"explain (analyze, buffers, costs off, summary off) {query}", params)
        plans[name] = [str(r[0]) for r in await cur.fetchall()]
    return plans
