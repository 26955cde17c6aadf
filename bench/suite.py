"""The run itself: start or find the stack, measure A, B, B_py, C, D, the comparisons E and F and the
session flow S, the race, scale, memory, and (full mode) where the database's and the API's time goes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from psycopg import AsyncConnection

from bench import diagnose, paths, profile, seed
from bench.drivers import Driver, Pgbench, PythonClient, RpcOverPostgrest, SessionFlow, WholeApi
from bench.harness import Arm, Timing, measure, measure_interleaved, run_rep
from bench.procs import CpuMeter
from bench.race import RaceShape, refused_by_index, run_race
from bench.seed import Seeder
from bench.server import ApiServer, PeakRss
from bench.target import Target, open_target, own_stack

Say = Callable[[str], None]
PATHS = ("A", "B", "B_py", "C", "D", "E", "F", "S")
API_PATHS = ("D", "E", "F", "S")  # each with an API process of its own kind: pysvc (D, S) or a peer (E, F)
ONLY_AT_RATIO = ("E", "F", "S")  # comparisons and the session flow: measured at 8 clients only
PROFILE_CONCURRENCY = 8
RATIO_CONCURRENCY = 8  # the targets' ratios are read here: these points are measured turn about
SAMPLER_DIR = Path(__file__).resolve().parent / "cpusampler"


@dataclass(frozen=True)
class Settings:
    mode: str
    timing: Timing
    concurrencies: tuple[int, ...]
    race: RaceShape
    scale: tuple[int, int]  # existing sessions for B's latency at concurrency 8
    scale_concurrency: int = 8
    profile_s: float = 10.0


QUICK = Settings(
    mode="quick",
    timing=Timing(warmup_s=0.5, rep_s=1.0, reps=1),
    concurrencies=(8,),
    race=RaceShape(customers=48, attempts=4, concurrency=32),
    scale=(10_000, 40_000),
    profile_s=3.0,
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
        api_profile: bool | None = None,
    ) -> None:
        self.settings = settings
        self.say = say
        self.paths = tuple(paths)
        full = settings.mode == "full"
        self.diagnostics = full if diagnostics is None else diagnostics
        self.api_profile = full if api_profile is None else api_profile
        self.tag = "bench" + dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
        self.results: dict[str, Any] = {"paths": {}, "notes": []}

    async def run(self) -> dict[str, Any]:
        began = time.monotonic()
        with open_target(self.say) as target:
            async with await AsyncConnection.connect(target.database_url, autocommit=True) as conn:
                self.results["machine"] = machine_info()
                self.results["target"] = await target_info(target, conn)
                seeder = Seeder(conn, self.tag)
                meter = CpuMeter({"postgres": target.postgres_pid, "postgrest": target.postgrest_pid})
                try:
                    with contextlib.ExitStack() as stack:
                        servers: dict[str, ApiServer] = {}
                        if {"D", "S"} & set(self.paths):
                            servers["D"] = servers["S"] = stack.enter_context(ApiServer(target))
                        for peer in ("E", "F"):
                            if peer in self.paths:
                                servers[peer] = stack.enter_context(ApiServer(target, peer=peer))
                        await self._sweeps(target, seeder, conn, meter, servers)
                        if {"B_py", "C"} & set(self.paths):
                            await self._races(target, seeder, conn)
                        if "D" in self.paths:
                            await self._api_diagnostics(target, seeder, conn, meter, servers)
                    if self.diagnostics and "B" in self.paths:
                        self.results.setdefault("database_profile", {})["B"] = await self._db_profile(
                            target, conn, meter, RpcOverPostgrest(seeder, target.rest_url, target.service_role_key),
                        )
                    if "B" in self.paths:
                        await self._scale(target, seeder, conn, meter)
                finally:
                    await seed.drop_pgbench_schema(conn)
                    if not target.own:
                        removed = await seed.delete_run_rows(conn, self.tag)
                        self.say(f"removed this run's {removed:,} users and their rows from the external database")
        self.results["duration_s"] = round(time.monotonic() - began, 1)
        return self.results

    def _driver(self, name: str, target: Target, seeder: Seeder, servers: dict[str, ApiServer]) -> Driver[Any]:
        if name == "A":
            return Pgbench(seeder, target.database_url)
        if name == "B":
            return RpcOverPostgrest(seeder, target.rest_url, target.service_role_key)
        if name == "S":
            return SessionFlow(seeder, servers[name].url, target.jwt_secret)
        if name in API_PATHS:
            return WholeApi(seeder, servers[name].url, target.jwt_secret, name=name)
        workload = paths.PythonRpc if name == "B_py" else paths.OriginalDesign
        return PythonClient(seeder, workload(target.rest_url, target.service_role_key))

    async def _sweeps(
        self, target: Target, seeder: Seeder, conn: AsyncConnection[tuple[object, ...]], meter: CpuMeter,
        servers: dict[str, ApiServer],
    ) -> None:
        """Every path at every concurrency (E, F and S at RATIO_CONCURRENCY only). At RATIO_CONCURRENCY,
        where the targets' ratios are read, the paths' repetitions alternate (A, B, B_py, C, D, E, F, S,
        A, ...), so the machine's other load falls on all of them alike; the other concurrencies are
        measured path by path."""
        arms: dict[str, Arm] = {}
        rss_roots = {"postgrest": target.postgrest_pid, **({"api": servers["D"].pid} if "D" in servers else {})}
        with PeakRss(rss_roots) as idle:
            await asyncio.sleep(0.2)
        try:
            for name in PATHS:
                if name in self.paths:
                    m = meter.with_tree("api", servers[name].pid) if name in servers else meter
                    arms[name] = Arm(self._driver(name, target, seeder, servers), m, conn)
                    self.results["paths"][name] = {}
            with PeakRss(rss_roots) as peak:
                for c in self.settings.concurrencies:
                    if c == RATIO_CONCURRENCY and len(arms) > 1:
                        self.say(f"- c{c}: {', '.join(arms)} turn about")
                        points = await measure_interleaved(list(arms.values()), c, self.settings.timing)
                        for name, point in zip(arms, points, strict=True):
                            point["interleaved_with"] = [n for n in arms if n != name]
                            self._record(name, c, point)
                        continue
                    for name, arm in arms.items():
                        if name in ONLY_AT_RATIO:
                            continue
                        self._record(name, c, await measure(arm.driver, c, self.settings.timing, arm.meter, conn))
        finally:
            for arm in arms.values():
                await arm.driver.aclose()
        self.results["memory"] = {"peak_rss_mb": peak.peaks_mb(), "idle_rss_mb": idle.peaks_mb(),
                                  "during": "every path's measured points"}
        self.say(f"  peak RSS: {peak.peaks_mb()} MiB (idle {idle.peaks_mb()})")

    def _record(self, name: str, c: int, point: dict[str, Any]) -> None:
        if name == "S" and point["sessions"]:
            steps = SessionFlow.requests_per_session
            point["requests_per_session"] = steps
            point["requests_per_session_measured"] = round(sum(r["requests"] for r in point["reps"])
                                                           / point["sessions"], 2)
            point["cpu_ms_per_request"] = {k: None if v is None else round(v / steps, 3)
                                           for k, v in point["cpu_ms_per_session"].items()}
        self.results["paths"][name][f"c{c}"] = point
        cpu = point["cpu_ms_per_session"]
        self.say(
            f"  {name:<4} c{c:<2} {point['throughput'] or 0:8.1f}/s"
            f"  p50 {point['p50_ms']} p95 {point['p95_ms']} p99 {point['p99_ms']} ms"
            f"  errors {sum(point['errors'].values())}  CPU ms/session "
            + " ".join(f"{k} {v}" for k, v in cpu.items() if v is not None),
        )

    # -- race ----------------------------------------------------------------------------------
    async def _races(self, target: Target, seeder: Seeder, conn: AsyncConnection[tuple[object, ...]]) -> None:
        shape = self.settings.race
        races: dict[str, Any] = {}
        self.say(f"- race: {shape.customers} customers x {shape.attempts} simultaneous attempts, c{shape.concurrency}")
        url, key = target.rest_url, target.service_role_key
        b, c = paths.PythonRpc(url, key), paths.OriginalDesign(url, key)
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
                races["C"]["would_be_duplicates"] = refused_by_index(races["C"]["outcomes"])
                races["C"]["method"] = (
                    "external database, index kept: attempts whose check passed but whose insert the unique"
                    " index refused, each a duplicate without the index"
                )
                would_be = races["C"]["would_be_duplicates"]
                self.say(f"  C (index present): {races['C']['outcomes']} -> {would_be} would-be duplicates")
        finally:
            await b.aclose()
            await c.aclose()
        self.results["races"] = races
        self.results["duplicates"] = {
            "B": races["B"]["customers_with_duplicates"]
            + races.get("B_lock_only", {}).get("customers_with_duplicates", 0),
            "C": races["C"].get("would_be_duplicates", races["C"]["customers_with_duplicates"]),
            "method": races["C"]["method"],
        }

    # -- D -------------------------------------------------------------------------------------
    async def _api_diagnostics(
        self, target: Target, seeder: Seeder, conn: AsyncConnection[tuple[object, ...]], meter: CpuMeter,
        servers: dict[str, ApiServer],
    ) -> None:
        server = servers["D"]
        api_meter = meter.with_tree("api", server.pid)
        if self.diagnostics:
            self.results.setdefault("database_profile", {})["D"] = await self._db_profile(
                target, conn, api_meter, WholeApi(seeder, server.url, target.jwt_secret),
            )
        if self.api_profile:
            self.results["api_profile"] = await self._api_profile(target, seeder, server, api_meter, conn)
            for path in ("F", "S"):  # the floor (the difference is what to remove) and a customer's session
                if path in servers:
                    self.results[f"api_profile_{path}"] = await self._api_profile(
                        target, seeder, servers[path], meter.with_tree("api", servers[path].pid), conn, path=path)

    async def _api_profile(
        self, target: Target, seeder: Seeder, server: ApiServer, meter: CpuMeter,
        conn: AsyncConnection[tuple[object, ...]], path: str = "D",
    ) -> dict[str, Any]:
        """Where the API's CPU goes during D (or F) at c8, two ways, each in one more run (not one of the
        measured repetitions): py-spy attached from outside, and a CPU-time sampler inside a second API
        process. Shares are turned into ms per intake with the API's CPU per session measured unprofiled
        at c8."""
        point = self.results["paths"][path].get(f"c{PROFILE_CONCURRENCY}") or {}
        api_ms = point.get("cpu_ms_per_session", {}).get("api")
        rate = max(float(point.get("throughput") or 500.0), 50.0)
        seconds = self.settings.profile_s
        found: dict[str, Any] = {"api_cpu_ms_per_session": api_ms, "concurrency": PROFILE_CONCURRENCY,
                                 "seconds": seconds}
        with tempfile.TemporaryDirectory(prefix="pysvc-bench-profile-") as tmp:
            d = self._api_driver(path, seeder, server.url, target.jwt_secret)
            try:
                found["py_spy"] = await self._py_spy(d, server, meter, conn, Path(tmp) / "py-spy.raw", rate, api_ms)
            finally:
                await d.aclose()
            out = Path(tmp) / "sampler.raw"
            env = {"PYTHONPATH": str(SAMPLER_DIR), "PYSVC_BENCH_CPU_PROFILE": str(out)}
            with ApiServer(target, env=env, peer=server.peer) as sampled:
                assert sampled.pid is not None
                d = self._api_driver(path, seeder, sampled.url, target.jwt_secret)
                sampled_meter = meter.with_tree("api", sampled.pid)
                try:
                    warm = await d.prepare(int(rate * 2 * 2) + 64)
                    await run_rep(d, warm, PROFILE_CONCURRENCY, 2.0, sampled_meter, conn)
                    batch = await d.prepare(int(rate * seconds * 2) + 64)
                    os.kill(sampled.pid, signal.SIGUSR1)
                    rep = await run_rep(d, batch, PROFILE_CONCURRENCY, seconds, sampled_meter, conn)
                    os.kill(sampled.pid, signal.SIGUSR2)
                    for _ in range(50):
                        if out.exists():
                            break
                        await asyncio.sleep(0.1)
                finally:
                    await d.aclose()
            if out.exists():
                found["cpu_sampler"] = {
                    "tool": "ITIMER_PROF sampler (bench/cpusampler), 1 sample per ms of the API's CPU",
                    "sessions": rep.sessions, "throughput": round(rep.throughput, 1),
                    **profile.summarise(out.read_text(), api_ms),
                }
            else:
                found["cpu_sampler"] = {"error": "the sampled API wrote no profile"}
        for name in ("py_spy", "cpu_sampler"):
            top = found[name].get("by_innermost_package") or []
            self.say(f"  {path} API profile ({name}): " + ", ".join(f"{r['name']} {r['share']:.0%}" for r in top[:7]))
        return found

    @staticmethod
    def _api_driver(path: str, seeder: Seeder, url: str, jwt_secret: str) -> WholeApi:
        return SessionFlow(seeder, url, jwt_secret) if path == "S" else WholeApi(seeder, url, jwt_secret, name=path)

    async def _py_spy(
        self, d: WholeApi, server: ApiServer, meter: CpuMeter, conn: AsyncConnection[tuple[object, ...]],
        out: Path, rate: float, api_ms: float | None,
    ) -> dict[str, Any]:
        assert server.pid is not None
        seconds = self.settings.profile_s
        batch = await d.prepare(int(rate * (seconds + 1) * 2) + 64)
        try:
            spy = profile.start(server.pid, out, seconds + 1)
        except FileNotFoundError as exc:
            return {"error": str(exc)}
        await asyncio.sleep(0.5)  # attached before the load starts
        rep = await run_rep(d, batch, PROFILE_CONCURRENCY, seconds, meter, conn)
        spy_out, _ = await asyncio.to_thread(spy.communicate)
        if spy.returncode != 0 or not out.exists():
            return {"error": f"py-spy exited with {spy.returncode}: {spy_out.decode(errors='replace').strip()[-500:]}"}
        return {
            "tool": "py-spy record --nonblocking --function --format raw (wall time while runnable)",
            "sessions": rep.sessions, "throughput": round(rep.throughput, 1),
            **profile.summarise(out.read_text(), api_ms),
        }

    # -- database profile ----------------------------------------------------------------------
    async def _db_profile(
        self, target: Target, conn: AsyncConnection[tuple[object, ...]], meter: CpuMeter, driver: Driver[Any],
    ) -> dict[str, Any] | None:
        """pg_stat_statements during one 3 s run of a path at concurrency 8, statements inside the
        function included (own stack: pg_stat_statements.track = all)."""
        if not await diagnose.ensure_pg_stat_statements(conn):
            return None
        if target.own:
            await diagnose.set_track_all(conn, True)
        try:
            point = self.results["paths"][driver.name].get("c8") or {}
            batch = await driver.prepare(int(max(float(point.get("throughput") or 1000.0), 50.0) * 3 * 2) + 64)
            await conn.execute("select pg_stat_statements_reset()")
            rep = await run_rep(driver, batch, 8, 3.0, meter, conn)
            found = await diagnose.statement_profile(conn, rep.sessions, limit=10)
            found["latency"] = rep.summary()
        finally:
            await driver.aclose()
            if target.own:
                await diagnose.set_track_all(conn, False)
        return found

    # -- scale ---------------------------------------------------------------------------------
    async def _scale(
        self, target: Target, seeder: Seeder, conn: AsyncConnection[tuple[object, ...]], meter: CpuMeter,
    ) -> None:
        """B at c8 with few and with many existing sessions. On our own stack the large table lives in a
        second stack of its own and the two are measured turn about, repetition by repetition, so the
        machine's other load cannot pass for an effect of the table's size. An external target is
        measured small, then topped up and measured large."""
        c = self.settings.scale_concurrency
        small, large = self.settings.scale
        removed = await seed.delete_run_sessions(conn, self.tag)
        self.say(f"- scale: removed this run's {removed:,} sessions; B at c{c} by table size")
        if not target.own:
            points = {}
            for size in (small, large):
                b = RpcOverPostgrest(seeder, target.rest_url, target.service_role_key)
                try:
                    rows = await seed.seed_history(conn, self.tag, size, self.say)
                    await diagnose.ensure_pg_stat_statements(conn)
                    point = await measure(b, c, self.settings.timing, meter, conn)
                finally:
                    await b.aclose()
                points[scale_label(size)] = await self._scale_point(point, rows, conn, seeder)
            self.results["scale"] = {"concurrency": c, "path": "B", "method": "sequential", "points": points}
            return
        with own_stack(self.say) as big:
            async with await AsyncConnection.connect(big.database_url, autocommit=True) as big_conn:
                big_seeder = Seeder(big_conn, self.tag)
                arms_setup = [(target, conn, seeder, meter, small),
                              (big, big_conn, big_seeder,
                               CpuMeter({"postgres": big.postgres_pid, "postgrest": big.postgrest_pid}), large)]
                arms: list[Arm] = []
                existing: list[int] = []
                try:
                    for t, cn, sd, m, size in arms_setup:
                        existing.append(await seed.seed_history(cn, self.tag, size, self.say))
                        await diagnose.ensure_pg_stat_statements(cn)
                        arms.append(Arm(RpcOverPostgrest(sd, t.rest_url, t.service_role_key), m, cn))
                    measured = await measure_interleaved(arms, c, self.settings.timing)
                finally:
                    for arm in arms:
                        await arm.driver.aclose()
                points = {}
                for point, n, (_, cn, sd, _, size) in zip(measured, existing, arms_setup, strict=True):
                    points[scale_label(size)] = await self._scale_point(point, n, cn, sd)
        self.results["scale"] = {
            "concurrency": c, "path": "B", "points": points,
            "method": "two stacks of our own, measured turn about (repetitions interleaved)",
        }

    async def _scale_point(
        self, point: dict[str, Any], existing: int, conn: AsyncConnection[tuple[object, ...]], seeder: Seeder,
    ) -> dict[str, Any]:
        point["existing_sessions"] = existing
        point["database"] = (await diagnose.statement_profile(conn, 0, limit=1, like="%pgrst_source%"))["statements"]
        probe = (await seeder.pairs(1))[0]
        point["explain"] = await diagnose.explain_lookups(conn, probe)
        self.say(
            f"  B c{point['concurrency']} at {existing:,} sessions: {point['throughput']}/s"
            f"  p50 {point['p50_ms']}  p95 {point['p95_ms']}  p99 {point['p99_ms']} ms"
            f"  server CPU {point['cpu_ms_per_session']['server']} ms/session",
        )
        return point


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
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


async def target_info(target: Target, conn: AsyncConnection[tuple[object, ...]]) -> dict[str, Any]:
    cur = await conn.execute("select current_setting('server_version'), current_setting('max_connections')")
    row = await cur.fetchone()
    assert row is not None
    postgrest = ""
    try:
        resp = httpx.get(f"{target.rest_url}/", headers=paths.service_headers(target.service_role_key))
        postgrest = resp.headers.get("server", "")
    except httpx.HTTPError:
        pass
    return {
        "stack": "own (embedded PostgreSQL + PostgREST in a temporary directory)" if target.own else "external",
        "postgres_version": str(row[0]),
        "postgres_max_connections": int(str(row[1])),
        "postgrest_version": postgrest,
        "pgrst_db_pool": int(target.pgrst_db_pool) if target.pgrst_db_pool else None,
        "postgrest_settings": postgrest_settings(target.postgrest_pid),
    }


SECRET_SETTINGS = ("PGRST_JWT_SECRET", "PGRST_DB_URI")


def postgrest_settings(pid: int | None) -> dict[str, str] | None:
    """PostgREST's PGRST_* settings from its environment (secrets left out), when it runs here."""
    if pid is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs if k.startswith("PGRST_") and k not in SECRET_SETTINGS}

