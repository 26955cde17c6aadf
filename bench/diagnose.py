"""Variants of path B that locate its limit (full mode): the same RPC through a bare shared httpx
client and through a minimal keep-alive HTTP/1.1 client; B through a PostgREST with a bigger pool;
where the database's time goes (pg_stat_statements) and how the function's lookups are planned."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from psycopg import AsyncConnection

from bench.paths import MAX_CONCURRENCY, PLAN, PairWorkload, ProductPath
from bench.seed import Pair, Seeder
from pysvc.factory import service_headers
from pysvc.local.stack import Stack

RPC_PATH = "/rpc/create_session_record"


def rpc_body(ticket: Pair) -> bytes:
    return json.dumps({
        "customer_id": str(ticket.customer), "plan": PLAN, "intake_id": str(ticket.intake), "payment_method": "free",
    }).encode()


class RpcFailed(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        self.code = str(status)
        super().__init__(f"{status} {body[:200]!r}")


class BareHttpxRpc(PairWorkload):
    """B without postgrest-py and pydantic: one shared httpx.AsyncClient, keep-alive for every worker."""

    name = "B-httpx"

    def __init__(self, seeder: Seeder, rest_url: str, service_role_key: str) -> None:
        super().__init__(seeder)
        self.client = httpx.AsyncClient(
            base_url=rest_url, headers=service_headers(service_role_key), timeout=30,
            limits=httpx.Limits(max_connections=2 * MAX_CONCURRENCY, max_keepalive_connections=2 * MAX_CONCURRENCY),
        )

    async def create(self, ticket: Pair) -> None:
        response = await self.client.post(RPC_PATH, content=rpc_body(ticket))
        if response.status_code != 200:
            raise RpcFailed(response.status_code, response.content)

    async def aclose(self) -> None:
        await self.client.aclose()


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LeanRpc(PairWorkload):
    """The same request from a minimal keep-alive HTTP/1.1 client on asyncio streams: nearly no
    client CPU, so what is left is PostgREST + PostgreSQL (on the same cores)."""

    name = "B-lean"

    def __init__(self, seeder: Seeder, rest_url: str, service_role_key: str) -> None:
        super().__init__(seeder)
        parts = urlsplit(rest_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        headers = {**service_headers(service_role_key), "Host": f"{self.host}:{self.port}"}
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.idle: list[Conn] = []
        self.all: list[Conn] = []

    async def _conn(self) -> Conn:
        if self.idle:
            return self.idle.pop()
        conn = await asyncio.open_connection(self.host, self.port)
        self.all.append(conn)
        return conn

    async def create(self, ticket: Pair) -> None:
        reader, writer = await self._conn()
        body = rpc_body(ticket)
        writer.write(
            f"POST {self.prefix}{RPC_PATH} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body,
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        lines = head.lower().split(b"\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:")), None)
        if length is not None:
            payload = await reader.readexactly(length)
        else:  # chunked
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                chunks.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            payload = b"".join(chunks)
        self.idle.append((reader, writer))
        if status != 200:
            raise RpcFailed(status, payload)

    async def aclose(self) -> None:
        for _, writer in self.all:
            writer.close()
        self.idle.clear()
        self.all.clear()


class CappedProductPath(PairWorkload):
    """B with at most `cap` RPCs in flight per process (an asyncio.Semaphore in front of the factory):
    the rest wait in the process instead of in httpx's connection pool."""

    def __init__(self, seeder: Seeder, rest_url: str, service_role_key: str, cap: int) -> None:
        super().__init__(seeder)
        self.name = f"B-cap{cap}"
        self.inner = ProductPath(seeder, rest_url, service_role_key)
        self.gate = asyncio.Semaphore(cap)

    async def create(self, ticket: Pair) -> None:
        async with self.gate:
            await self.inner.create(ticket)

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextmanager
def extra_postgrest(database_url: str, pool: int) -> Iterator[tuple[str, str]]:
    """A second PostgREST on the bench's own database with PGRST_DB_POOL=pool; yields (url, key)."""
    home = Path(tempfile.mkdtemp(prefix="pysvc-bench-pgrst-"))
    before = os.environ.get("PGRST_DB_POOL")
    os.environ["PGRST_DB_POOL"] = str(pool)
    stack = Stack(home, rest_port=0, database_url=database_url, say=lambda _: None)
    try:
        info = stack.start()
        yield info.rest_url, info.service_role_key
    finally:
        if before is None:
            os.environ.pop("PGRST_DB_POOL", None)
        else:
            os.environ["PGRST_DB_POOL"] = before
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)


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


def per_session_cpu_ms(point: dict[str, Any]) -> dict[str, float]:
    """CPU milliseconds each process spent per created session at one point."""
    throughput = float(point["throughput"]) or 1.0
    return {name: round(pct / 100 / throughput * 1000, 3) for name, pct in point["cpu_pct"].items()}

