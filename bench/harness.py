"""Timed, concurrent runs: warm-up, repetitions of fixed duration, latency percentiles, CPU use."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import psutil

T = TypeVar("T")


class Workload(ABC, Generic[T]):
    """One way of creating a session. `tickets(n)` seeds what n creations consume (outside the
    clock); `create(ticket)` makes one session and raises on any failure."""

    name: str

    @abstractmethod
    async def tickets(self, n: int) -> Sequence[T]: ...

    @abstractmethod
    async def create(self, ticket: T) -> None: ...

    async def aclose(self) -> None:
        pass


def error_name(exc: BaseException) -> str:
    code = getattr(exc, "code", None) or getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__}:{code}" if code else type(exc).__name__


@dataclass(frozen=True)
class Timing:
    warmup_s: float
    rep_s: float
    reps: int


class CpuMeter:
    """CPU seconds used by named process trees (a process and its children) and by single
    processes (the bench client itself, whose children are other measured servers)."""

    def __init__(self, trees: Mapping[str, int | None], single: Mapping[str, int | None] | None = None) -> None:
        self.trees = {name: pid for name, pid in trees.items() if pid is not None}
        self.single = {name: pid for name, pid in (single or {}).items() if pid is not None}

    def with_tree(self, name: str, pid: int | None) -> CpuMeter:
        return CpuMeter({**self.trees, name: pid}, self.single)

    def read(self) -> dict[str, float]:
        cpu = {name: _tree_cpu(pid) for name, pid in self.trees.items()}
        cpu.update({name: _tree_cpu(pid, recursive=False) for name, pid in self.single.items()})
        return cpu

    @staticmethod
    def percent(before: dict[str, float], after: dict[str, float], elapsed: float) -> dict[str, float]:
        """Percent of one core (200 = both cores of a 2-core machine)."""
        return {
            name: round(100 * max(0.0, after[name] - before.get(name, 0.0)) / elapsed, 1)
            for name in after if elapsed > 0
        }


def _tree_cpu(pid: int, *, recursive: bool = True) -> float:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)] if recursive else [proc]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Rep:
    ops: int
    elapsed_s: float
    latencies_ms: list[float]
    errors: Counter[str]
    cpu_pct: dict[str, float]
    exhausted: bool

    @property
    def throughput(self) -> float:
        return self.ops / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "ops": self.ops,
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput": round(self.throughput, 1),
            "p50_ms": round(percentile(lat, 50), 2),
            "p95_ms": round(percentile(lat, 95), 2),
            "p99_ms": round(percentile(lat, 99), 2),
            "errors": dict(self.errors),
            "cpu_pct": self.cpu_pct,
            "tickets_ran_out": self.exhausted,
        }


@dataclass
class Point:
    """One (path, concurrency) measurement: the median of its repetitions."""

    concurrency: int
    reps: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def med(key: str) -> float:
            values = [r[key] for r in self.reps if not math.isnan(r[key])]
            return round(statistics.median(values), 2) if values else math.nan

        cpu_keys = sorted({k for r in self.reps for k in r["cpu_pct"]})
        errors: Counter[str] = Counter()
        for r in self.reps:
            errors.update(r["errors"])
        return {
            "concurrency": self.concurrency,
            "throughput": round(med("throughput"), 1),
            "p50_ms": med("p50_ms"),
            "p95_ms": med("p95_ms"),
            "p99_ms": med("p99_ms"),
            "errors": dict(errors),
            "cpu_pct": {k: round(statistics.median(r["cpu_pct"].get(k, 0.0) for r in self.reps), 1) for k in cpu_keys},
            "reps": self.reps,
        }


async def run_once(
    workload: Workload[T], tickets: Sequence[T], concurrency: int, duration_s: float, meter: CpuMeter,
) -> Rep:
    """`concurrency` workers create sessions back to back until the duration is over."""
    it = iter(tickets)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    exhausted = False
    cpu_before = meter.read()
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
    elapsed = time.perf_counter() - start
    cpu = CpuMeter.percent(cpu_before, meter.read(), elapsed)
    return Rep(len(latencies), elapsed, latencies, errors, cpu, exhausted)


async def measure(
    workload: Workload[T], concurrency: int, timing: Timing, meter: CpuMeter, *, rate_guess: float = 2000.0,
) -> Point:
    """Warm up, then `timing.reps` repetitions; tickets for each are seeded before its clock starts."""
    warm_tickets = await workload.tickets(max(4 * concurrency, math.ceil(rate_guess * timing.warmup_s)))
    warm = await run_once(workload, warm_tickets, concurrency, timing.warmup_s, meter)
    rate = max(warm.throughput, 50.0)
    point = Point(concurrency)
    for _ in range(timing.reps):
        need = math.ceil(rate * timing.rep_s * 2) + 4 * concurrency
        tickets = await workload.tickets(need)
        rep = await run_once(workload, tickets, concurrency, timing.rep_s, meter)
        rate = max(rate, rep.throughput)
        point.reps.append(rep.summary())
    return point

