"""The run itself: start or find the stack, measure A-D, the races, scale and memory."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import psutil
from psycopg import AsyncConnection

from bench import diagnose, seed
from bench.harness import CpuMeter, Timing, Workload, measure, run_once
from bench.paths import DatabaseLimit, OriginalDesign, ProductPath, WholeApi
from bench.race import RaceShape, refused_by_index, run_race
from bench.seed import Pair, Seeder
from bench.server import ApiServer, ApiUnavailable, PeakRss, api_importable
from bench.target import Target, listener_pid, open_target

T = TypeVar("T")
Say = Callable[[str], None]
PATHS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Settings:
    mode: str
    timing: Timing
    concurrencies: tuple[int, ...]
    race: RaceShape
    scale: tuple[int, int]  # existing sessions for B's latency at concurrency 8
    scale_concurrency: int = 8


QUICK = Settings(
    mode="quick",
    timing=Timing(warmup_s=0.5, rep_s=1.0, reps=3),
    concurrencies=(1, 8, 32),
    race=RaceShape(customers=48, attempts=4, concurrency=32),
    scale=(10_000, 100_000),
)
FULL = Settings(
    mode="full",
    timing=Timing(warmup_s=2.0, rep_s=5.0, reps=5),
    concurrencies=(1, 8, 32),
    race=RaceShape(customers=256, attempts=4, concurrency=32),
    scale=(10_000, 1_000_000),
)


def scale_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


class Suite:
    def __init__(
        self, settings: Settings, say: Say, *, paths: Sequence[str] = PATHS, diagnostics: bool | None = None,
    ) -> None:
        self.settings = settings
        self.say = say
        self.paths = tuple(paths)
        self.diagnostics = settings.mode == "full" if diagnostics is None else diagnostics
        self.tag = "bench" + dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
        self.results: dict[str, Any] = {"paths": {}, "notes": []}

    async def run(self, *, pgrst_pool: int | None = None) -> dict[str, Any]:
        began = time.monotonic()
        with open_target(self.say, pgrst_pool=pgrst_pool) as target:
            async with await AsyncConnection.connect(target.database_url, autocommit=True) as conn:
                self.results["machine"] = machine_info()
                self.results["target"] = await target_info(target, conn)
                seeder = Seeder(conn, self.tag)
                meter = CpuMeter(
                    {"postgres": target.postgres_pid, "postgrest": target.postgrest_pid},
                    {"client": os.getpid()},
                )
                try:
                    await self._paths_abc(target, seeder, meter)
                    if {"B", "C"} <= set(self.paths):
                        await self._races(target, seeder, conn)
                    if "D" in self.paths:
                        await self._whole_api(target, seeder, meter)
                    if self.diagnostics and "B" in self.paths:
                        await self._diagnose(target, seeder, conn, meter)
                    if "B" in self.paths:
                        await self._scale(target, seeder, conn, meter)
                finally:
                    if not target.own:
                        removed = await seed.delete_run_rows(conn, self.tag)
                        self.say(f"removed this run's {removed:,} users and their rows from the external database")
        self.results["duration_s"] = round(time.monotonic() - began, 1)
        return self.results

    # -- A, B, C -------------------------------------------------------------------------------
    async def _paths_abc(self, target: Target, seeder: Seeder, meter: CpuMeter) -> None:
        for name in ("A", "B", "C"):
            if name not in self.paths:
                continue
            workload = self._workload(name, target, seeder)
            if isinstance(workload, DatabaseLimit):
                await workload.open()
            try:
                await self._sweep(workload, meter)
            finally:
                await workload.aclose()

    def _workload(self, name: str, target: Target, seeder: Seeder) -> Workload[Pair]:
        if name == "A":
            return DatabaseLimit(seeder, target.database_url)
        if name == "B":
            return ProductPath(seeder, target.rest_url, target.service_role_key)
        return OriginalDesign(seeder, target.rest_url, target.service_role_key)

    async def _sweep(self, workload: Workload[T], meter: CpuMeter) -> None:
        self.results["paths"][workload.name] = await self._points(workload, meter, self.settings.concurrencies)

    # -- races ---------------------------------------------------------------------------------
    async def _races(self, target: Target, seeder: Seeder, conn: AsyncConnection[tuple[object, ...]]) -> None:
        shape = self.settings.race
        races: dict[str, Any] = {}
        self.say(f"- race: {shape.customers} customers x {shape.attempts} simultaneous attempts, c{shape.concurrency}")
        b = ProductPath(seeder, target.rest_url, target.service_role_key)
        c = OriginalDesign(seeder, target.rest_url, target.service_role_key)
        try:
            races["B"], _ = await run_race(b, seeder, conn, shape)
            races["B"]["unique_index"] = "present"
            self.say(f"  B (index present): {races['B']['outcomes']} -> {races['B']['customers_with_duplicates']} dup")
            if target.own:
                definition = await seed.drop_active_index(conn)
                used: list[Any] = []
                try:
                    races["C"], customers = await run_race(c, seeder, conn, shape)
                    used += customers
                    races["C"]["unique_index"] = "dropped, as in the seed's schema"
                    races["C"]["method"] = "SQL: customers having more than one active session (index dropped)"
                    races["B_lock_only"], customers = await run_race(b, seeder, conn, shape)
                    used += customers
                    races["B_lock_only"]["unique_index"] = "dropped: only the function's advisory lock stands"
                finally:
                    await seed.delete_sessions_of(conn, used)
                    await seed.recreate_active_index(conn, definition)
                self.say(f"  C (no index): {races['C']['outcomes']} -> {races['C']['customers_with_duplicates']} dup")
                self.say(
                    f"  B (no index): {races['B_lock_only']['outcomes']}"
                    f" -> {races['B_lock_only']['customers_with_duplicates']} dup",
                )
            else:
                races["C"], _ = await run_race(c, seeder, conn, shape)
                races["C"]["unique_index"] = "present (external database: nothing dropped)"
                would_be = refused_by_index(races["C"]["outcomes"])
                races["C"]["would_be_duplicates"] = would_be
                races["C"]["method"] = (
                    "external database, index kept: attempts whose check passed but whose insert the unique"
                    " index refused, each a duplicate without the index"
                )
                self.say(f"  C (index present): {races['C']['outcomes']} -> {would_be} would-be duplicates")
        finally:
            await b.aclose()
            await c.aclose()
        self.results["races"] = races
        c_dups = races["C"].get("would_be_duplicates", races["C"]["customers_with_duplicates"])
        self.results["duplicates"] = {
            "B": races["B"]["customers_with_duplicates"]
            + races.get("B_lock_only", {}).get("customers_with_duplicates", 0),
            "C": c_dups,
            "method": races["C"]["method"],
        }

    # -- D -------------------------------------------------------------------------------------
    async def _whole_api(self, target: Target, seeder: Seeder, meter: CpuMeter) -> None:
        ok, why = api_importable()
        if not ok:
            self._d_unavailable(f"`import pysvc.api` failed: {why}")
            return
        try:
            server = ApiServer(target).__enter__()
        except ApiUnavailable as exc:
            self._d_unavailable(str(exc))
            return
        try:
            d = WholeApi(seeder, server.url, target.jwt_secret)
            rss_roots = {"api": server.pid, "postgrest": target.postgrest_pid}
            idle = PeakRss(rss_roots)
            with idle:
                time.sleep(0.2)
            with PeakRss(rss_roots) as peak:
                try:
                    await self._sweep(d, meter.with_tree("api", server.pid))
                finally:
                    await d.aclose()
            self.results["memory"] = {
                "peak_rss_mb": peak.peaks_mb(),
                "idle_rss_mb": idle.peaks_mb(),
                "during": "path D, all concurrencies",
            }
            self.say(f"  peak RSS during D: {peak.peaks_mb()} MiB (idle {idle.peaks_mb()})")
        finally:
            server.__exit__(None, None, None)

    def _d_unavailable(self, why: str) -> None:
        self.say(f"  D skipped: {why}")
        self.results["paths"]["D"] = None
        self.results["memory"] = None
        self.results["notes"].append(f"D not measured: {why}")

    # -- diagnostics ---------------------------------------------------------------------------
    async def _diagnose(
        self, target: Target, seeder: Seeder, conn: AsyncConnection[tuple[object, ...]], meter: CpuMeter,
    ) -> None:
        """B's variants (shorter repetitions than the main points) and a database profile."""
        self.say("- diagnostics: variants of B")
        t = self.settings.timing
        timing = Timing(warmup_s=min(t.warmup_s, 1.0), rep_s=min(t.rep_s, 3.0), reps=min(t.reps, 3))
        found: dict[str, Any] = {"timing": dataclasses.asdict(timing), "variants": {}}
        url, key = target.rest_url, target.service_role_key
        runs: list[tuple[Workload[Pair], tuple[int, ...], CpuMeter]] = [
            (diagnose.BareHttpxRpc(seeder, url, key), (8, 32), meter),
            (diagnose.LeanRpc(seeder, url, key), (8, 32), meter),
            (diagnose.CappedProductPath(seeder, url, key, cap=8), (32,), meter),
        ]
        for workload, concurrencies, m in runs:
            try:
                found["variants"][workload.name] = await self._points(workload, m, concurrencies, timing=timing)
            finally:
                await workload.aclose()
        if target.own:
            pool = 32
            with diagnose.extra_postgrest(target.database_url, pool) as (url32, key32):
                m32 = meter.with_tree("postgrest", target_pgrst_pid(url32))
                for workload, concurrencies in (
                    (ProductPath(seeder, url32, key32), (8, 32)),
                    (diagnose.LeanRpc(seeder, url32, key32), (32,)),
                ):
                    label = f"{workload.name}-pool{pool}"
                    try:
                        found["variants"][label] = await self._points(
                            workload, m32, concurrencies, timing=timing, label=label,
                        )
                    finally:
                        await workload.aclose()
        if self.results["paths"].get("D"):
            found["variants"].update(await self._api_workers(target, seeder, meter, timing, workers=2))
        found["profile"] = await self._profile(target, seeder, conn, meter)
        self.results["diagnostics"] = found

    async def _api_workers(
        self, target: Target, seeder: Seeder, meter: CpuMeter, timing: Timing, *, workers: int,
    ) -> dict[str, Any]:
        """D against the same app run by uvicorn with several worker processes."""
        label = f"D-workers{workers}"
        try:
            server = ApiServer(target, workers=workers).__enter__()
        except ApiUnavailable as exc:
            self.say(f"  {label} skipped: {exc}")
            return {}
        try:
            d = WholeApi(seeder, server.url, target.jwt_secret)
            try:
                points = await self._points(d, meter.with_tree("api", server.pid), (8, 32), timing=timing, label=label)
            finally:
                await d.aclose()
        finally:
            server.__exit__(None, None, None)
        return {label: points}

    async def _points(
        self, workload: Workload[T], meter: CpuMeter, concurrencies: Sequence[int], *,
        timing: Timing | None = None, label: str | None = None,
    ) -> dict[str, Any]:
        points: dict[str, Any] = {}
        for c in concurrencies:
            point = (await measure(workload, c, timing or self.settings.timing, meter)).summary()
            point["cpu_ms_per_session"] = diagnose.per_session_cpu_ms(point)
            points[str(c)] = point
            self.say(
                f"  {label or workload.name} c{c:<2} {point['throughput']:8.1f}/s  p50 {point['p50_ms']:.1f} ms"
                f"  p95 {point['p95_ms']:.1f}  p99 {point['p99_ms']:.1f}  errors {sum(point['errors'].values())}"
                f"  cpu {point['cpu_pct']}",
            )
        return points

    async def _profile(
        self, target: Target, seeder: Seeder, conn: AsyncConnection[tuple[object, ...]], meter: CpuMeter,
    ) -> dict[str, Any] | None:
        """pg_stat_statements during one B run at concurrency 8, statements inside the function included."""
        if not await diagnose.ensure_pg_stat_statements(conn):
            return None
        if target.own:
            await diagnose.set_track_all(conn, True)
        b = ProductPath(seeder, target.rest_url, target.service_role_key)
        try:
            tickets = await b.tickets(20_000)
            await conn.execute("select pg_stat_statements_reset()")
            rep = await run_once(b, tickets, 8, self.settings.timing.rep_s, meter)
            profile = await diagnose.statement_profile(conn, rep.ops)
            profile["latency"] = rep.summary()
        finally:
            await b.aclose()
            if target.own:
                await diagnose.set_track_all(conn, False)
        return profile

    # -- scale ---------------------------------------------------------------------------------
    async def _scale(
        self, target: Target, seeder: Seeder, conn: AsyncConnection[tuple[object, ...]], meter: CpuMeter,
    ) -> None:
        c = self.settings.scale_concurrency
        removed = await seed.delete_run_sessions(conn, self.tag)
        self.say(f"- scale: removed this run's {removed:,} sessions; B at c{c} by table size")
        scale: dict[str, Any] = {}
        b = ProductPath(seeder, target.rest_url, target.service_role_key)
        try:
            for size in self.settings.scale:
                existing = await seed.seed_history(conn, self.tag, size, self.say)
                tracked = await diagnose.ensure_pg_stat_statements(conn)
                point = (await measure(b, c, self.settings.timing, meter)).summary()
                point["existing_sessions"] = existing
                if tracked:
                    point["database"] = (await diagnose.statement_profile(conn, 0, limit=1, like="%pgrst_source%"))[
                        "statements"
                    ]
                probe = (await seeder.pairs(1))[0]
                point["explain"] = await diagnose.explain_lookups(conn, probe)
                scale[scale_label(size)] = point
                self.say(
                    f"  B c{c} at {existing:,} sessions: {point['throughput']:.1f}/s"
                    f"  p50 {point['p50_ms']:.1f}  p95 {point['p95_ms']:.1f}  p99 {point['p99_ms']:.1f} ms",
                )
        finally:
            await b.aclose()
        self.results["scale"] = {"concurrency": c, "path": "B", "points": scale}


def target_pgrst_pid(url: str) -> int | None:
    return listener_pid(url, default_port=80)


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):  # noqa: SIM115
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


async def target_info(target: Target, conn: AsyncConnection[tuple[object, ...]]) -> dict[str, Any]:
    cur = await conn.execute("select current_setting('server_version'), current_setting('max_connections')")
    row = await cur.fetchone()
    assert row is not None
    postgrest = ""
    try:
        resp = httpx.get(f"{target.rest_url}/", headers={"apikey": target.service_role_key,
                                                         "Authorization": f"Bearer {target.service_role_key}"})
        postgrest = resp.headers.get("server", "")
    except httpx.HTTPError:
        pass
    return {
        "stack": "own (embedded PostgreSQL + PostgREST in a temporary directory)" if target.own else "external",
        "postgres_version": str(row[0]),
        "postgres_max_connections": int(str(row[1])),
        "postgrest_version": postgrest,
        "pgrst_db_pool": int(target.pgrst_db_pool) if target.pgrst_db_pool else None,
    }
