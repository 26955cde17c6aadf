"""`python -m bench --quick` is CI's smoke run: every path runs with its real load generator (pgbench,
autocannon, the Python client) against a stack of its own, the results file has the keys the targets
are read from, and the product path lets no duplicate through. Timings are reported, never asserted
(they live in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pysvc.local.stack import PROJECT_ROOT

RATIOS = {"D_cpu_over_A_cpu_c8", "D_over_B_c8", "D_over_E_c8", "D_api_cpu_over_F_api_cpu_c8", "F_over_B_c8",
          "B_over_C_c8", "B_p99_1M_over_10k", "B_over_A_c8", "B_over_A_c32"}
PATHS = {"A": "pgbench", "B": "autocannon", "B_py": "Python", "C": "Python", "D": "autocannon", "E": "autocannon",
         "F": "autocannon", "S": "autocannon"}
PROCESSES = {"postgres", "postgrest", "api", "client"}


def test_quick_benchmark_measures_every_path_and_lets_no_duplicate_through(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (results_file,) = tmp_path.glob("*.json")
    results = json.loads(results_file.read_text())
    assert results["mode"] == "quick"
    assert set(results["ratios"]) == RATIOS
    for name, tool in PATHS.items():
        point = results["paths"][name]["c8"]
        assert point["sessions"] > 0, (name, point)
        assert tool in point["client"], (name, point["client"])
        cpu = point["cpu_ms_per_session"]
        assert set(cpu) >= PROCESSES, (name, cpu)
        assert cpu["postgres"] > 0 and cpu["client"] > 0, (name, cpu)
    for name in ("D", "E", "F", "S"):
        assert results["paths"][name]["c8"]["cpu_ms_per_session"]["api"] > 0, name
    assert results["paths"]["S"]["c8"]["cpu_ms_per_request"]["api"] > 0
    assert "/" not in results["paths"]["A"]["c8"]["client"], "pgbench is named by its version, not a path"
    for ratio in ("D_cpu_over_A_cpu_c8", "D_over_E_c8", "D_api_cpu_over_F_api_cpu_c8"):
        assert results["ratios"][ratio] is not None, ratio
    assert results["duplicates"]["B"] == 0
    assert results["duplicates"]["C"] > 0, "the race scenario no longer races: it proves nothing"
