"""`python -m bench --quick` is CI's smoke run: it must complete and B must let no duplicate through.
Timings are reported, never asserted (they live in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pysvc.local.stack import PROJECT_ROOT

RATIOS = {"B_over_C_c8", "B_over_A_c8", "B_over_A_c32", "D_over_B_c8", "B_p99_1M_over_10k"}


def test_quick_benchmark_completes_with_no_duplicate_from_the_product_path(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (results_file,) = tmp_path.glob("*.json")
    results = json.loads(results_file.read_text())
    assert results["mode"] == "quick"
    assert set(results["ratios"]) == RATIOS
    assert results["duplicates"]["B"] == 0
    assert results["duplicates"]["C"] > 0, "the race scenario no longer races: it proves nothing"
