"""The duplicate-session race: many concurrent attempts for the same customers.

Each customer gets `attempts` intakes and all of them are submitted at once (a double click, two
tabs, a webhook retry next to the intake page). Afterwards SQL counts the customers that ended up
with more than one active session.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from bench.drivers import run_workers
from bench.paths import PairWorkload
from bench.seed import Seeder, duplicate_customers


@dataclass(frozen=True)
class RaceShape:
    customers: int
    attempts: int  # concurrent attempts per customer
    concurrency: int


async def run_race(
    workload: PairWorkload, seeder: Seeder, conn: AsyncConnection[tuple[object, ...]], shape: RaceShape,
) -> tuple[dict[str, Any], list[Any]]:
    """Run the scenario once; returns its figures and the customers it used (for clean-up)."""
    pairs = await seeder.pairs(shape.customers, per_customer=shape.attempts)
    customers = sorted({p.customer for p in pairs})
    rep = await run_workers(workload, pairs, shape.concurrency, math.inf)
    dup_customers, extra_sessions = await duplicate_customers(conn, customers)
    outcomes: Counter[str] = Counter(rep.errors)
    outcomes["created"] = rep.ok
    return {
        "customers": shape.customers,
        "attempts_per_customer": shape.attempts,
        "concurrency": shape.concurrency,
        "outcomes": dict(sorted(outcomes.items())),
        "customers_with_duplicates": dup_customers,
        "extra_active_sessions": extra_sessions,
    }, customers


def refused_by_index(outcomes: dict[str, int]) -> int:
    """C's attempts whose check passed but whose insert the unique index refused: each would have
    been a duplicate active session without the index (the seed's schema)."""
    return sum(n for key, n in outcomes.items() if key == "StepFailed:sessions:409:23505:one_active")
