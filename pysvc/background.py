"""The work `pysvc serve` does between requests, each step supervised on its own: the session sweep
(expiry, no-show, live time limit), the Stripe outbox and, when RECONCILE_HOURS is set, reconcile.

Every step is safe to run from any number of processes at once (skip-locked claims, no lock waits),
so every instance runs them; `pysvc sessions expire` and `pysvc outbox run` run one pass from cron.
A step that fails is logged (an unexpected exception with its traceback) and counted, and the next
step and the next pass still run; `/healthz` reports a step that has not succeeded for
STALL_AFTER_INTERVALS of its intervals (docs/operations.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pysvc.errors import ApiError

if TYPE_CHECKING:
    from pysvc.deps import Services

log = logging.getLogger(__name__)

RECONCILE_EVERY_SECONDS = 600.0  # Stripe's list API is not for every pass
STALL_AFTER_INTERVALS = 3


@dataclass
class Job:
    """One supervised step: what it runs, how often, and when it last succeeded."""

    name: str
    run: Callable[[], Awaitable[None]]
    every: float
    created: float = field(default_factory=time.monotonic)
    last_run: float = float("-inf")
    last_success: float | None = None  # time.monotonic()
    last_success_at: datetime | None = None

    def due(self, now: float) -> bool:
        return now - self.last_run >= self.every

    def stalled(self, now: float) -> bool:
        since = self.last_success if self.last_success is not None else self.created
        return now - since > STALL_AFTER_INTERVALS * self.every


@dataclass(frozen=True)
class JobHealth:
    last_success_at: datetime | None
    every_seconds: float
    stalled: bool


class Supervisor:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.interval = svc.settings.background_interval_seconds
        self.jobs: dict[str, Job] = {
            "sweep": Job("sweep", self._sweep, self.interval),
            "outbox": Job("outbox", self._outbox, self.interval),
        }
        if svc.settings.reconcile_hours:
            self.jobs["reconcile"] = Job("reconcile", self._reconcile, max(self.interval, RECONCILE_EVERY_SECONDS))

    async def _sweep(self) -> None:
        result = await self.svc.lifecycle.sweep()
        if result.expired or result.no_shows or result.timed_out:
            log.info("sweep: %s expired, %s no-show(s) back in the queue, %s timed out",
                     result.expired, result.no_shows, result.timed_out)

    async def _outbox(self) -> None:
        sent = await self.svc.outbox.run_once()
        if any(sent.values()):
            log.info("stripe outbox: %s", sent)

    async def _reconcile(self) -> None:
        from pysvc import stripe_ops  # it needs the whole service container

        assert self.svc.settings.reconcile_hours is not None
        for line in await stripe_ops.reconcile(self.svc, timedelta(hours=self.svc.settings.reconcile_hours)):
            if line.result != "already fulfilled":
                log.warning("reconcile: %s %s %s", line.subject, line.result, line.detail)

    async def run_once(self) -> None:
        """Every due step, each on its own: one failing never keeps the others from running."""
        for job in list(self.jobs.values()):
            if job.due(time.monotonic()):
                await self._guarded(job)

    async def _guarded(self, job: Job) -> None:
        job.last_run = time.monotonic()
        try:
            await job.run()
        except asyncio.CancelledError:
            raise
        except ApiError as exc:  # a backend is down or refused: expected now and then, no traceback
            self.svc.metrics.background_failed(job.name, "backend")
            log.warning("background %s failed: %s: %s", job.name, exc.code, exc.detail)
            return
        except Exception:
            self.svc.metrics.background_failed(job.name, "unexpected")
            log.exception("background %s raised an unexpected exception; the other steps go on", job.name)
            return
        job.last_success = time.monotonic()
        job.last_success_at = datetime.now(UTC)
        self.svc.metrics.background_succeeded(job.name, job.last_success_at.timestamp())

    async def run_forever(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)

    def health(self) -> dict[str, JobHealth]:
        now = time.monotonic()
        return {name: JobHealth(job.last_success_at, job.every, job.stalled(now)) for name, job in self.jobs.items()}
