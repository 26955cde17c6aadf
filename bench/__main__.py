"""`python -m bench [--quick] [--out DIR]`: run the suite, write bench/results/<date>[-quick].json and,
in full mode, docs/benchmarks.md + docs/benchmarks.png. Exits 1 if path B let a duplicate active
session through; no timing threshold gates anything."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import report
from bench.suite import FULL, PATHS, QUICK, Suite

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
MEASURED = ("pysvc", "sql", "supabase")  # the code a run measures (its commit's trees, and uncommitted files)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run for CI (< 1 min); docs are not touched")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the results JSON")
    parser.add_argument(
        "--paths", default=",".join(PATHS),
        help=f"comma-separated subset of {','.join(PATHS)} (development; default all)",
    )
    parser.add_argument(
        "--diagnose", action=argparse.BooleanOptionalAction, default=None,
        help="pg_stat_statements profile of B (default: in full mode only)",
    )
    parser.add_argument(
        "--profile", action=argparse.BooleanOptionalAction, default=None,
        help="py-spy profile of the API during D at 8 clients (default: in full mode only; needs ptrace)",
    )
    parser.add_argument("--reps", type=int, help="repetitions per point (development; default: the mode's)")
    parser.add_argument("--rep-s", type=float, help="seconds per repetition (development; default: the mode's)")
    parser.add_argument("--profile-s", type=float, help="seconds per API profile (development)")
    parser.add_argument("--no-docs", action="store_true", help="full mode without regenerating docs/benchmarks.md")
    parser.add_argument(
        "--render", type=Path, metavar="RESULTS_JSON", help="only regenerate docs/benchmarks.md from a results file",
    )
    return parser.parse_args(argv)


def source_state() -> dict[str, object]:
    """The commit measured, and which of the measured code's files differed from it (the API, the SQL)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30,
                                  check=False).stdout.strip()
        except OSError:
            return ""

    changed = git("status", "--porcelain", "--", *MEASURED).splitlines()
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "trees": {name: git("rev-parse", "--short", f"HEAD:{name}") for name in MEASURED},
        "uncommitted": [line[3:] for line in changed],
    }


def code_changed(before: dict[str, object], after: dict[str, object]) -> bool:
    """Whether the measured code (not just HEAD: other files may be committed meanwhile) changed."""
    return any(before.get(k) != after.get(k) for k in ("trees", "uncommitted"))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        results = report.finish(json.loads(args.render.read_text()))
        say(f"wrote {report.write_docs(results, args.render)}")
        return 0
    by_upper = {p.upper(): p for p in PATHS}
    paths = [by_upper.get(p.strip().upper(), p.strip()) for p in args.paths.split(",") if p.strip()]
    if unknown := set(paths) - set(PATHS):
        say(f"unknown path(s): {', '.join(sorted(unknown))}")
        return 2
    settings = QUICK if args.quick else FULL
    if args.reps or args.rep_s:
        timing = dataclasses.replace(settings.timing, **{k: v for k, v in (("reps", args.reps), ("rep_s", args.rep_s))
                                                          if v})
        settings = dataclasses.replace(settings, timing=timing)
    if args.profile_s:
        settings = dataclasses.replace(settings, profile_s=args.profile_s)
    started = dt.datetime.now(dt.UTC)
    say(f"bench: {settings.mode} mode, paths {','.join(paths)}")
    began = time.monotonic()
    source_at_start = source_state()
    suite = Suite(settings, say, paths=paths, diagnostics=args.diagnose, api_profile=args.profile)
    results = asyncio.run(suite.run())
    results = {
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "mode": settings.mode,
        "source": source_at_start,
        "settings": {
            "timing": dataclasses.asdict(settings.timing),
            "concurrencies": list(settings.concurrencies),
            "race": dataclasses.asdict(settings.race),
            "scale_sessions": list(settings.scale),
            "paths": paths,
        },
        **results,
    }
    source_at_end = source_state()
    if code_changed(source_at_start, source_at_end):
        results["source"]["changed_during_run"] = source_at_end
        results["notes"].append("the measured code changed during the run (see source.changed_during_run)")
    results = report.finish(results)
    out = report.write_json(results, args.out)
    say(f"wrote {out}")
    if settings.mode == "full" and not args.no_docs and paths == list(PATHS):
        say(f"wrote {report.write_docs(results, out)}")
    say(f"ratios: {json.dumps(results['ratios'])}")
    say(f"duplicates: {json.dumps(results['duplicates'])}; took {time.monotonic() - began:.0f} s")
    b_dups = results["duplicates"].get("B")
    if b_dups:
        say(f"FAIL: path B let {b_dups} customer(s) have more than one active session")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
