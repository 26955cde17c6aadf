"""One (path, concurrency) point: a warm-up, then repetitions of fixed duration, each with freshly
seeded tickets. Around each repetition: the sessions table is counted and every server's CPU is read
from /proc, so CPU per created session is per process and per session actually written."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from psycopg import AsyncConnection

from bench.drivers import Driver, Run
from bench.procs import Cpu, CpuMeter
from bench.seed import count_sessions

PROCESSES = ("postgres", "postgrest", "api", "client")
SETTLE_S = 0.3  # after the load generator exits: requests it abandoned finish, exited backends are reaped


@dataclass(frozen=True)
class Timing:
    warmup_s: float
    rep_s: float
    reps: int


class Window:
    """The measured part of one run: sessions counted and servers' CPU read when it opens and closes.
    A driver opens it when its load starts to count (after its own warm-up, if any) and closes it
    when the load generator has finished."""

    def __init__(self, meter: CpuMeter, conn: AsyncConnection[tuple[object, ...]]) -> None:
        self.meter = meter
        self.conn = conn
        self.cpu0: dict[str, Cpu] = {}
        self.cpu1: dict[str, Cpu] = {}
        self.count0 = self.count1 = 0
        self.opened_at = 0.0  # time.time() when opened

    async def open(self) -> None:
        self.count0 = await count_sessions(self.conn)
        self.cpu0 = self.meter.read()
        self.opened_at = time.time()

    async def close(self) -> None:
        await asyncio.sleep(SETTLE_S)
        self.cpu1 = self.meter.read()
        self.count1 = await count_sessions(self.conn)

    @property
    def sessions(self) -> int:
        return self.count1 - self.count0

    def cpu_s(self) -> dict[str, Cpu]:
        """(user, system) seconds each server used while the window was open."""
        return {
            name: (max(0.0, u1 - self.cpu0.get(name, (u1, s1))[0]), max(0.0, s1 - self.cpu0.get(name, (u1, s1))[1]))
            for name, (u1, s1) in self.cpu1.items()
        }


@dataclass
class Rep:
    sessions: int
    run: Run
    split: dict[str, Cpu]  # (user, system) seconds per process, the load generator as `client`

    @property
    def cpu_s(self) -> dict[str, float]:
        return {name: u + s for name, (u, s) in self.split.items()}

    @property
    def throughput(self) -> float:
        return self.sessions / self.run.elapsed_s if self.run.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        run = asdict(self.run)
        return {
            "sessions": self.sessions,
            "throughput": round(self.throughput, 1),
            **{k: run[k] for k in ("elapsed_s", "requests", "ok", "p50_ms", "p95_ms", "p99_ms", "errors",
                                   "tickets_ran_out")},
            "cpu_s": {k: round(v, 4) for k, v in self.cpu_s.items()},
            "cpu_system_s": {k: round(s, 4) for k, (_, s) in self.split.items()},
            **run["extra"],
        }


async def run_rep(
    driver: Driver[Any], batch: Any, concurrency: int, duration_s: float, meter: CpuMeter,
    conn: AsyncConnection[tuple[object, ...]],
) -> Rep:
    window = Window(meter, conn)
    run = await driver.run(batch, concurrency, duration_s, window)
    cpu = window.cpu_s()
    cpu["client"] = run.client_cpu
    return Rep(window.sessions, run, cpu)


def _med(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return round(statistics.median(clean), 2) if clean else None


def summarise(concurrency: int, reps: list[Rep], client: str) -> dict[str, Any]:
    """Throughput and percentiles: the median repetition's. CPU per session: all repetitions' CPU
    over all their sessions (per process; `server` = every process but the load generator)."""
    sessions = sum(r.sessions for r in reps)
    elapsed = sum(r.run.elapsed_s for r in reps)
    names = [n for n in PROCESSES if any(n in r.cpu_s for r in reps)]
    cpu_s = {n: sum(r.cpu_s.get(n, 0.0) for r in reps) for n in names}
    per_session: dict[str, float | None] = {
        n: (round(1000 * cpu_s[n] / sessions, 3) if n in cpu_s and sessions else None) for n in PROCESSES
    }
    server = sum(cpu_s[n] for n in names if n != "client")
    per_session["server"] = round(1000 * server / sessions, 3) if sessions else None
    per_session["total"] = round(1000 * (server + cpu_s.get("client", 0.0)) / sessions, 3) if sessions else None
    system = {n: sum(r.split[n][1] for r in reps if n in r.split) for n in names}
    errors: Counter[str] = Counter()
    for r in reps:
        errors.update(r.run.errors)
    return {
        "concurrency": concurrency,
        "client": client,
        "sessions": sessions,
        "throughput": _med([r.throughput for r in reps]),
        "p50_ms": _med([r.run.p50_ms for r in reps]),
        "p95_ms": _med([r.run.p95_ms for r in reps]),
        "p99_ms": _med([r.run.p99_ms for r in reps]),
        "errors": dict(errors),
        "cpu_ms_per_session": per_session,
        "system_cpu_ms_per_session": {n: round(1000 * system[n] / sessions, 3) if sessions else None for n in names},
        "cpu_pct": {n: round(100 * cpu_s[n] / elapsed, 1) for n in names} if elapsed else {},
        "tickets_ran_out": any(r.run.tickets_ran_out for r in reps),
        "reps": [r.summary() for r in reps],
    }


async def measure(
    driver: Driver[Any], concurrency: int, timing: Timing, meter: CpuMeter,
    conn: AsyncConnection[tuple[object, ...]], *, rate_guess: float = 3000.0,
) -> dict[str, Any]:
    """Warm up, then `timing.reps` repetitions; each one's tickets are seeded before its clock starts,
    twice as many as the fastest rate seen so far needs (a driver's own warm-up, `extra_s`, included)."""
    seconds = timing.warmup_s + driver.extra_s
    warm_batch = await driver.prepare(max(4 * concurrency, math.ceil(rate_guess * seconds * 1.5)))
    warm = await run_rep(driver, warm_batch, concurrency, timing.warmup_s, meter, conn)
    rate = max(warm.throughput, rate_guess if warm.run.tickets_ran_out else 50.0)
    reps: list[Rep] = []
    for _ in range(timing.reps):
        batch = await driver.prepare(math.ceil(rate * (timing.rep_s + driver.extra_s) * 2) + 4 * concurrency)
        rep = await run_rep(driver, batch, concurrency, timing.rep_s, meter, conn)
        rate = max(rate, rep.throughput)
        reps.append(rep)
    return summarise(concurrency, reps, driver.client)


@dataclass
class Arm:
    """One of several setups measured turn about (the same driver kind against different stacks)."""

    driver: Driver[Any]
    meter: CpuMeter
    conn: AsyncConnection[tuple[object, ...]]


async def measure_interleaved(
    arms: list[Arm], concurrency: int, timing: Timing, *, rate_guess: float = 3000.0,
) -> list[dict[str, Any]]:
    """Like `measure`, for several arms whose repetitions alternate (arm 1, arm 2, arm 1, ...), so a
    change in the machine's other load falls on all of them alike and their ratio stays fair."""
    rates: list[float] = []
    for arm in arms:
        seconds = timing.warmup_s + arm.driver.extra_s
        batch = await arm.driver.prepare(max(4 * concurrency, math.ceil(rate_guess * seconds * 1.5)))
        warm = await run_rep(arm.driver, batch, concurrency, timing.warmup_s, arm.meter, arm.conn)
        rates.append(max(warm.throughput, rate_guess if warm.run.tickets_ran_out else 50.0))
    reps: list[list[Rep]] = [[] for _ in arms]
    for _ in range(timing.reps):
        for i, arm in enumerate(arms):
            need = math.ceil(rates[i] * (timing.rep_s + arm.driver.extra_s) * 2) + 4 * concurrency
            batch = await arm.driver.prepare(need)
            rep = await run_rep(arm.driver, batch, concurrency, timing.rep_s, arm.meter, arm.conn)
            rates[i] = max(rates[i], rep.throughput)
            reps[i].append(rep)
    return [summarise(concurrency, r, arm.driver.client) for r, arm in zip(reps, arms, strict=True)]
