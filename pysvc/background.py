"""The work `pysvc serve` does between requests: the expiry sweep and the Stripe outbox.

Both are SQL functions that are safe to run from any number of processes at once (skip-locked
claims, no lock waits), so every instance may run them; `pysvc sessions expire` and
`pysvc outbox run` run one pass from cron."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from pysvc.errors import ApiError
from pysvc.lifecycle import Lifecycle
from pysvc.outbox import Outbox
from pysvc.settings import Settings

log = logging.getLogger(__name__)


async def one_pass(settings: Settings, lifecycle: Lifecycle, outbox: Outbox) -> None:
    expired = await lifecycle.expire(timedelta(minutes=settings.session_expiry_minutes),
                                     timedelta(minutes=settings.urgent_session_expiry_minutes))
    if expired.get("expired"):
        log.info("expired %s session(s)", expired["expired"])
    sent = await outbox.run_once()
    if any(sent.values()):
        log.info("stripe outbox: %s", sent)


async def run_forever(settings: Settings, lifecycle: Lifecycle, outbox: Outbox) -> None:
    while True:
        try:
            await one_pass(settings, lifecycle, outbox)
        except ApiError as exc:  # the backend is down: try again next time
            log.warning("background pass failed: %s", exc)
        await asyncio.sleep(settings.background_interval_seconds)
