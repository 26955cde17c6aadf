"""What `GET /metrics` serves: this process's counters (`pysvc.metrics`), then the database's
numbers read at scrape time in one call (`public.ops_stats`): the webhook inbox's backlog and the
Stripe outbox, so every process reports the same numbers and a restart loses none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, ValidationError

from pysvc.errors import ApiError
from pysvc.metrics import Metrics
from pysvc.postgrest import Rpc

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
STUCK_AFTER_SECONDS = 600  # an event still `received` this long after it arrived is stuck


class InboxBacklog(BaseModel):
    model_config = ConfigDict(frozen=True)

    received: int
    stuck: int
    failed: int


class OpsStats(BaseModel):
    """What `public.ops_stats` answers."""

    model_config = ConfigDict(frozen=True)

    inbox: InboxBacklog
    outbox: dict[str, dict[str, int]]  # kind -> status -> requests
    payments: dict[str, int] = {}  # status -> payments, for the states an operator acts on
    audit_violations: int = 0


async def scrape(metrics: Metrics, rpc: Rpc, *, stuck_after_seconds: int = STUCK_AFTER_SECONDS) -> bytes:
    """The exposition text: this process's counters, then the database's numbers read now. When the
    database does not answer, the counters are still served and `pysvc_ops_stats_up` is 0."""
    stats: OpsStats | None = None
    try:
        stats = OpsStats.model_validate(
            await rpc.call("ops_stats", {"stuck_after": f"{stuck_after_seconds} seconds"}))
    except (ApiError, ValidationError) as exc:
        log.warning("ops_stats failed; /metrics serves the counters only: %s", exc)
    return generate_latest(metrics.registry) + generate_latest(_Snapshot(stats, stuck_after_seconds))


class _Snapshot:
    """The database's numbers of one scrape as gauges (a collector of its own: no state shared
    between concurrent scrapes)."""

    def __init__(self, stats: OpsStats | None, stuck_after_seconds: int) -> None:
        self.stats = stats
        self.stuck_after_seconds = stuck_after_seconds

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("pysvc_ops_stats_up", "1 if the database answered ops_stats for this scrape; "
                               "0 if not, and then the inbox and outbox gauges are missing.")
        up.add_metric([], 1 if self.stats else 0)
        yield up
        if self.stats is None:
            return
        inbox = GaugeMetricFamily(
            "pysvc_stripe_inbox_events", "Stripe events in the webhook inbox that are not done: received "
            f"(not finished yet, stuck included), stuck (received over {self.stuck_after_seconds} s ago: "
            "a crash or an outage left them), failed (will not succeed on retry).",
            labels=["state"],
        )
        for state, count in self.stats.inbox.model_dump().items():
            inbox.add_metric([state], count)
        yield inbox
        outbox = GaugeMetricFamily(
            "pysvc_stripe_outbox_requests", "Requests to Stripe decided in SQL (refunds, expiring Checkout "
            "Sessions) by kind and status: pending (queued or retrying), sent, failed (Stripe refused).",
            labels=["kind", "status"],
        )
        for kind, by_status in sorted(self.stats.outbox.items()):
            for status, count in sorted(by_status.items()):
                outbox.add_metric([kind, status], count)
        yield outbox
        payments = GaugeMetricFamily(
            "pysvc_payments", "Payments waiting on something, by status: paid (not used or refunded yet), "
            "processing (the bank has not cleared it), refund_requested, refund_failed (a person must act: "
            "pysvc payments audit).", labels=["status"],
        )
        for status, count in sorted(self.stats.payments.items()):
            payments.add_metric([status], count)
        yield payments
        audit = GaugeMetricFamily(
            "pysvc_payment_audit_violations", "Payments of the last 90 days breaking the money rule (exactly one "
            "session or one full refund) or stuck in between: pysvc payments audit lists them.",
        )
        audit.add_metric([], self.stats.audit_violations)
        yield audit
