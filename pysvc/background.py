"""The work `pysvc serve` does between requests: the expiry sweep and the Stripe outbox.

Both are SQL functions that are safe to run from any number of processes at once (skip-locked
claims, no lock waits), so every instance may run them; `pysvc sessions expire` and
`pysvc outbox run` run one pass from cron."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from pysvc import stripe_ops
from pysvc.errors import ApiError
from pysvc.lifecycle import Lifecycle
from pysvc.outbox import Outbox
from pysvc.settings import Settings

if TYPE_CHECKING:
    from pysvc.deps import Services

log = logging.getLogger(__name__)


RECONCILE_EVERY_SECONDS = 600  # Stripe's list API is not for every pass


async def one_pass(settings: Settings, lifecycle: Lifecycle, outbox: Outbox) -> None:
    expired = await lifecycle.expire(timedelta(minutes=settings.session_expiry_minutes),
                                     timedelta(minutes=settings.urgent_session_expiry_minutes))
    if expired.get("expired"):
        log.info("expired %s session(s)", expired["expired"])
    sent = await outbox.run_once()
    if any(sent.values()):
        log.info("stripe outbox: %s", sent)


async def run_forever(svc: Services) -> None:
    reconciled_at = float("-inf")
    while True:
        try:
            await one_pass(svc.settings, svc.lifecycle, svc.outbox)
            if svc.settings.reconcile_hours and time.monotonic() - reconciled_at > RECONCILE_EVERY_SECONDS:
                reconciled_at = time.monotonic()
                lines = await stripe_ops.reconcile(svc, timedelta(hours=svc.settings.reconcile_hours))
                for line in lines:
                    if line.result != "already fulfilled":
                        log.warning("reconcile: %s %s %s", line.subject, line.result, line.detail)
        except ApiError as exc:  # the backend is down: try again next time
            log.warning("background pass failed: %s", exc)
        await asyncio.sleep(svc.settings.background_interval_seconds)
