"""Results file (JSON), target ratios, and docs/benchmarks.md with its chart (full mode only)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FINDINGS = Path(__file__).resolve().parent / "findings.md"
PATH_NAMES = {
    "A": "A. database limit (SQL function over psycopg pool)",
    "B": "B. product path (AsyncSessionFactory → PostgREST → RPC)",
    "C": "C. original design (check + 4 inserts over PostgREST)",
    "D": "D. whole API (POST /api/intake/start)",
}


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
    Target("B_over_C_c8", ">=", 4.0, "B throughput ≥ 4 x C at concurrency 8"),
    Target("B_over_A_c8", ">=", 0.5, "B throughput ≥ 0.5 x A at concurrency 8"),
    Target("B_over_A_c32", ">=", 0.5, "B throughput ≥ 0.5 x A at concurrency 32"),
    Target("D_over_B_c8", ">=", 0.5, "D throughput ≥ 0.5 x B at concurrency 8"),
    Target("B_p99_1M_over_10k", "<=", 1.25, "B p99 at 1M existing sessions ≤ 1.25 x at 10k (concurrency 8)"),
)


def _point(results: dict[str, Any], path: str, c: int) -> dict[str, Any] | None:
    points = results.get("paths", {}).get(path)
    return points.get(str(c)) if points else None


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 3)


def _thr(results: dict[str, Any], path: str, c: int) -> float | None:
    point = _point(results, path, c)
    return None if point is None else float(point["throughput"])


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    scale = results.get("scale", {}).get("points", {})
    labels = list(scale)
    small = scale[labels[0]]["p99_ms"] if labels else None
    large = scale[labels[-1]]["p99_ms"] if len(labels) > 1 else None
    return {
        "B_over_C_c8": _div(_thr(results, "B", 8), _thr(results, "C", 8)),
        "B_over_A_c8": _div(_thr(results, "B", 8), _thr(results, "A", 8)),
        "B_over_A_c32": _div(_thr(results, "B", 32), _thr(results, "A", 32)),
        "D_over_B_c8": _div(_thr(results, "D", 8), _thr(results, "B", 8)),
        "B_p99_1M_over_10k": _div(large, small),
    }


def finish(results: dict[str, Any]) -> dict[str, Any]:
    """Add the ratios and their verdicts (and fix the key order of the file)."""
    values = ratios(results)
    results["ratios"] = values
    results["targets"] = {
        t.key: {"target": f"{t.op} {t.bound}", "value": values[t.key], "met": t.met(values[t.key])} for t in TARGETS
    }
    if results.get("mode") == "quick" and len(results.get("scale", {}).get("points", {})) > 1:
        labels = list(results["scale"]["points"])
        results["notes"].append(
            f"quick mode: B_p99_1M_over_10k is measured at {labels[-1]} over {labels[0]} existing sessions",
        )
    results.setdefault("duplicates", {"B": None, "C": None})
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

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5))
    for name in PATH_NAMES:
        points = results["paths"].get(name)
        if not points:
            continue
        cs = [int(c) for c in points]
        left.plot(cs, [points[str(c)]["throughput"] for c in cs], marker="o", label=PATH_NAMES[name])
        right.plot(cs, [points[str(c)]["p99_ms"] for c in cs], marker="o", label=name)
    lean = (results.get("diagnostics") or {}).get("variants", {}).get("B-lean")
    if lean:
        cs = [int(c) for c in lean]
        left.plot(cs, [lean[str(c)]["throughput"] for c in cs], marker="x", linestyle="--", color="tab:orange",
                  alpha=0.6, label="B-lean (diagnostic): B's RPC from a near-zero-cost HTTP client")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 8, 32], labels=["1", "8", "32"])
        ax.set_xlabel("concurrent clients")
        ax.grid(True, alpha=0.3)
    left.set_ylabel("sessions created per second")
    left.set_title("Throughput by concurrency")
    left.set_ylim(bottom=0)
    right.set_yscale("log")
    right.set_ylabel("p99 latency (ms, log)")
    right.set_title("p99 latency by concurrency")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2, frameon=False)
    m = results.get("machine", {})
    fig.suptitle(f"Session creation, {results['date']}, {m.get('cores')} cores (client and servers share them)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(results: dict[str, Any], results_file: Path, chart_name: str) -> str:
    m, t = results["machine"], results["target"]
    timing = results["settings"]["timing"]
    source = results_file.resolve()
    where = f"[`{source.relative_to(ROOT)}`](../{source.relative_to(ROOT)})" if source.is_relative_to(ROOT) else (
        f"`{source}`"
    )
    lines = [
        "# Benchmarks: creating a session",
        "",
        "<!-- Generated by `python -m bench` (full mode) from the results file below; edit bench/report.py"
        " or bench/findings.md instead. -->",
        "",
        f"Run of {results['date']} ({results['mode']} mode, {results['duration_s']:.0f} s), raw figures in {where}.",
        f"Machine: {m['cores']} cores ({m['cpu_model'] or 'unknown CPU'}), {m['memory_gib']} GiB, {m['os']},"
        f" Python {m['python']}. PostgreSQL {t['postgres_version']}, {t['postgrest_version'] or 'PostgREST ?'},"
        f" PostgREST pool (PGRST_DB_POOL) {_fmt(t['pgrst_db_pool'])}; target: {t['stack']}.",
        f"Each point is the median of {timing['reps']} repetitions of {timing['rep_s']} s after a"
        f" {timing['warmup_s']} s warm-up; every session uses a fresh customer and intake seeded beforehand."
        " The load generator (one asyncio process) runs on the same cores as PostgreSQL, PostgREST and the API.",
        "",
        "Reproduce: `make bench` (this page) or `make bench-quick` (CI smoke, < 2 min, results only).",
        "",
        "## Throughput and latency",
        "",
        "| path | clients | sessions/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, title in PATH_NAMES.items():
        points = results["paths"].get(name)
        if not points:
            lines.append(f"| {title} | - | not measured | | | | |")
            continue
        for c, p in points.items():
            errors = sum(p["errors"].values())
            lines.append(
                f"| {title} | {c} | {_fmt(p['throughput'])} | {_fmt(p['p50_ms'], 2)} | {_fmt(p['p95_ms'], 2)}"
                f" | {_fmt(p['p99_ms'], 2)} | {errors} |",
            )
    lines += ["", f"![throughput and p99 latency by concurrency]({chart_name})", "", "## Targets", "",
              "| ratio | value | target | verdict |", "|---|---:|---|---|"]
    for target in TARGETS:
        row = results["targets"][target.key]
        verdict = {True: "**met**", False: "**not met**", None: "not measured"}[row["met"]]
        lines.append(f"| `{target.key}`: {target.text} | {_fmt(row['value'], 2)} | {row['target']} | {verdict} |")
    lines += _limits(results) + _races(results) + _scale(results) + _memory(results) + _cpu(results)
    lines += _diagnostics(results)
    if FINDINGS.exists():
        lines += ["", FINDINGS.read_text().strip()]
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


def _races(results: dict[str, Any]) -> list[str]:
    races = results.get("races")
    if not races:
        return []
    lines = ["", "## Duplicate active sessions under a race", ""]
    any_race = next(iter(races.values()))
    lines.append(
        f"{any_race['customers']} customers, each with {any_race['attempts_per_customer']} intakes submitted at"
        f" the same time ({any_race['concurrency']} concurrent clients). Counted afterwards in SQL: customers"
        " having more than one active session.",
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
             " VACUUM ANALYZE and CHECKPOINT before measuring.", "",
             "| existing sessions | sessions/s | p50 ms | p95 ms | p99 ms | RPC in the database: mean / max ms |",
             "|---:|---:|---:|---:|---:|---:|"]
    for point in scale["points"].values():
        db = (point.get("database") or [{}])[0]
        lines.append(
            f"| {point['existing_sessions']:,} | {_fmt(point['throughput'])} | {_fmt(point['p50_ms'], 2)}"
            f" | {_fmt(point['p95_ms'], 2)} | {_fmt(point['p99_ms'], 2)}"
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
        return ["", "## Memory", "", "Not measured (path D did not run)."]
    peak, idle = memory["peak_rss_mb"], memory["idle_rss_mb"]
    lines = ["", "## Memory during D (RSS, sampled every 50 ms)", "", "| process | idle MiB | peak MiB |",
             "|---|---:|---:|"]
    for name in peak:
        lines.append(f"| {name} | {_fmt(idle.get(name))} | {_fmt(peak[name])} |")
    return lines


def _cpu(results: dict[str, Any]) -> list[str]:
    lines = ["", "## Where the CPU went", "",
             "Median CPU use during the measured repetitions, in % of one core (the machine has"
             f" {results['machine']['cores']} cores, so {100 * (results['machine']['cores'] or 1)} % is all of it).",
             "`client` is the load generator itself.", "",
             "| path | clients | postgres | postgrest | api | client | total | CPU ms per session |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in PATH_NAMES:
        points = results["paths"].get(name)
        if not points:
            continue
        for c, p in points.items():
            lines.append(_cpu_row(name, c, p))
    return lines


def _cpu_row(name: str, c: str, p: dict[str, Any]) -> str:
    cpu = p["cpu_pct"]
    total = sum(cpu.values())
    per_session = 10 * total / p["throughput"] if p["throughput"] else math.nan
    return (
        f"| {name} | {c} | {_fmt(cpu.get('postgres'), 0)} | {_fmt(cpu.get('postgrest'), 0)}"
        f" | {_fmt(cpu.get('api'), 0)} | {_fmt(cpu.get('client'), 0)} | {_fmt(total, 0)} | {_fmt(per_session, 2)} |"
    )


SINGLE_LOOP = {"client": "the load generator's one Python event loop", "api": "the API's one Python event loop"}


def limit_of(p: dict[str, Any], cores: int) -> str:
    """What one point was limited by, judged from its CPU use."""
    cpu: dict[str, float] = p["cpu_pct"]
    total = sum(cpu.values())
    busy = [name for name in SINGLE_LOOP if cpu.get(name, 0.0) >= 75]
    shares = ", ".join(f"{k} {v:.0f} %" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
    if busy:
        what = " and ".join(SINGLE_LOOP[b] for b in busy)
        return f"{what} near its ceiling (one core); {shares}"
    if total >= 0.85 * 100 * cores:
        return f"all {cores} cores busy ({total:.0f} %): {shares}"
    return f"no process at its ceiling ({total:.0f} % of {100 * cores} %): waiting on round trips; {shares}"


def _limits(results: dict[str, Any]) -> list[str]:
    cores = int(results["machine"].get("cores") or 1)
    lines = ["", "## What limits each path (from CPU use at 8 and 32 clients)", ""]
    for name, title in PATH_NAMES.items():
        points = results["paths"].get(name)
        if not points:
            continue
        for c in ("8", "32"):
            if c in points:
                lines.append(f"- **{title}**, {c} clients: {limit_of(points[c], cores)}.")
    return lines


def _diagnostics(results: dict[str, Any]) -> list[str]:
    diag = results.get("diagnostics")
    if not diag:
        return []
    timing = diag["timing"]
    lines = ["", "## Diagnostics: variants of B and D", "",
             f"Median of {timing['reps']} x {timing['rep_s']} s. `B-httpx`: the same RPC through one bare shared"
             " httpx client (no postgrest-py, no pydantic). `B-lean`: a minimal keep-alive HTTP/1.1 client on"
             " asyncio streams, so nearly all CPU left goes to PostgREST and PostgreSQL. `B-cap8`: B with at most"
             " 8 RPCs in flight (a semaphore before the factory). `*-pool32`: through a second PostgREST on the"
             " same database with PGRST_DB_POOL=32. `D-workers2`: the same API app under uvicorn with 2 worker"
             " processes (`pysvc serve` runs one).", "",
             "| variant | clients | sessions/s | p50 ms | p99 ms | postgres | postgrest | api | client"
             " | client CPU ms/session |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [(f"{name} (as measured above)", c, points[c]) for name in ("B", "D")
            if (points := results["paths"].get(name)) for c in ("8", "32") if c in points]
    rows += [(name, c, p) for name, points in diag["variants"].items() for c, p in points.items()]
    for name, c, p in rows:
        cpu = p["cpu_pct"]
        client_ms = 10 * cpu.get("client", 0.0) / p["throughput"] if p["throughput"] else math.nan
        lines.append(
            f"| {name} | {c} | {_fmt(p['throughput'])} | {_fmt(p['p50_ms'], 2)} | {_fmt(p['p99_ms'], 2)}"
            f" | {_fmt(cpu.get('postgres'), 0)} | {_fmt(cpu.get('postgrest'), 0)} | {_fmt(cpu.get('api'), 0)}"
            f" | {_fmt(cpu.get('client'), 0)} | {_fmt(client_ms, 2)} |",
        )
    profile = diag.get("profile")
    if profile:
        lat = profile["latency"]
        lines += ["", f"Database time per B session (pg_stat_statements, statements inside the function included;"
                      f" one {timing['rep_s']} s run at 8 clients: {profile['sessions']} sessions,"
                      f" p50 {_fmt(lat['p50_ms'], 2)} ms end to end):", "",
                  "| statement | top level | calls | mean ms | ms per session |", "|---|---|---:|---:|---:|"]
        for st in profile["statements"]:
            query = st["query"].replace("|", "\\|")[:90]
            lines.append(f"| `{query}` | {'yes' if st['toplevel'] else 'no'} | {st['calls']} | {_fmt(st['mean_ms'], 3)}"
                         f" | {_fmt(st['ms_per_session'], 3)} |")
    return lines
