"""What the benchmark runs against: its own stack in a temporary directory, or an external one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from pysvc.local.stack import Stack

EXTERNAL_VARS = ("DATABASE_URL", "SUPABASE_REST_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_JWT_SECRET")


@dataclass(frozen=True)
class Target:
    database_url: str
    rest_url: str
    service_role_key: str
    jwt_secret: str
    own: bool  # True: the bench started this stack and may change its schema (drop/recreate an index)
    postgres_pid: int | None
    postgrest_pid: int | None
    pgrst_db_pool: str | None  # PostgREST's pool size when the bench started PostgREST itself


def external_from_env() -> Target | None:
    """The target named by the environment, when all four variables are set."""
    if not all(os.environ.get(name) for name in EXTERNAL_VARS):
        return None
    database_url = os.environ["DATABASE_URL"]
    rest_url = os.environ["SUPABASE_REST_URL"].rstrip("/")
    return Target(
        database_url=database_url,
        rest_url=rest_url,
        service_role_key=os.environ["SUPABASE_SERVICE_ROLE_KEY"],
        jwt_secret=os.environ["SUPABASE_JWT_SECRET"],
        own=False,
        postgres_pid=listener_pid(database_url, default_port=5432),
        postgrest_pid=listener_pid(rest_url, default_port=80),
        pgrst_db_pool=None,
    )


def listener_pid(url: str, *, default_port: int) -> int | None:
    """The local process listening on the URL's port, if the URL is on this machine (for CPU/RSS)."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    port = parts.port or default_port
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except (psutil.AccessDenied, PermissionError):
        return None
    return None


@contextmanager
def own_stack(say: Callable[[str], None], *, pgrst_pool: int | None = None) -> Iterator[Target]:
    """Embedded PostgreSQL + PostgREST in a temporary directory, removed afterwards."""
    if pgrst_pool is not None:
        os.environ["PGRST_DB_POOL"] = str(pgrst_pool)
    home = Path(tempfile.mkdtemp(prefix="pysvc-bench-"))
    try:  # no gateway: the benchmark talks to PostgREST itself, and the gateway is one more Python process
        stack = Stack(home, db_port=0, rest_port=0, say=say, gateway=False)
    except TypeError:
        stack = Stack(home, db_port=0, rest_port=0, say=say)
    try:
        info = stack.start()
        yield Target(
            database_url=info.database_url,
            rest_url=info.rest_url,
            service_role_key=info.service_role_key,
            jwt_secret=info.jwt_secret,
            own=True,
            postgres_pid=info.postgres_pid,
            postgrest_pid=info.postgrest_pid,
            pgrst_db_pool=os.environ.get("PGRST_DB_POOL", "10"),
        )
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def open_target(say: Callable[[str], None], *, pgrst_pool: int | None = None) -> Iterator[Target]:
    """The external target when DATABASE_URL & co. are all set, else a stack of our own."""
    external = external_from_env()
    if external is not None:
        say(f"using the external stack at {external.rest_url} (nothing will be dropped)")
        yield external
        return
    with own_stack(say, pgrst_pool=pgrst_pool) as target:
        yield target
