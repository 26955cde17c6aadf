"""Prometheus metrics for `GET /metrics`, one registry per app (tests run several apps in one process).

Counted in the process as things happen: webhook events by type and outcome, sessions created by
payment method, PostgREST RPC latency by function. Read from the database at scrape time, in one call
(`public.ops_stats`): the webhook inbox's backlog and the Stripe outbox, so every process reports the
same numbers and a restart loses none of them. The metrics object is built once per app
(`pysvc.deps.Services.build`) and handed to what it counts.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, ValidationError

from pysvc.enums import PaymentMethod
from pysvc.errors import ApiError

if TYPE_CHECKING:
    from pysvc.postgrest import Rpc

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"  # every webhook event type without a handler: the `type` label stays bounded
STUCK_AFTER_SECONDS = 600  # an event still `received` this long after it arrived is stuck
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhook_events = Counter(
            "pysvc_webhook_events", "Verified Stripe events by type (other: no handler) and what became of them "
            "(an inbox status; duplicate: already finished; error: transient failure, left for a retry).",
            ("type", "outcome"), registry=self.registry,
        )
        self.sessions_created = Counter(
            "pysvc_sessions_created", "Sessions created (not found already made) by payment method.",
            ("payment_method",), registry=self.registry,
        )
        self.rpc_duration = Histogram(
            "pysvc_rpc_duration_seconds", "PostgREST /rpc/ round trips by SQL function, failures included "
            "(time waiting for a free slot in the process is not counted).",
            ("function",), registry=self.registry, buckets=RPC_BUCKETS,
        )
        # Label children looked up once, not on every call (the request path's hot part)
        self._created = {method.value: self.sessions_created.labels(payment_method=method.value)
                         for method in PaymentMethod}  # 0 from the start, so rate() sees the first one
        self._rpc: dict[str, Any] = {}

    def webhook_event(self, event_type: str, outcome: str, handled: Collection[str]) -> None:
        label = event_type if event_type in handled else OTHER
        self.webhook_events.labels(type=label, outcome=outcome).inc()

    def session_created(self, payment_method: str) -> None:
        counter = self._created.get(payment_method) or self.sessions_created.labels(payment_method=payment_method)
        counter.inc()

    def rpc_observe(self, function: str, seconds: float) -> None:
        """One RPC round trip's duration (`pysvc_rpc_duration_seconds`)."""
        child = self._rpc.get(function)
        if child is None:
            child = self._rpc[function] = self.rpc_duration.labels(function=function)
        child.observe(seconds)

    async def scrape(self, rpc: Rpc, *, stuck_after_seconds: int = STUCK_AFTER_SECONDS) -> bytes:
        """The exposition text: this process's counters, then the database's numbers read now. When the
        database does not answer, the counters are still served and `pysvc_ops_stats_up` is 0."""
        stats: OpsStats | None = None
        try:
            stats = OpsStats.model_validate(
                await rpc.call("ops_stats", {"stuck_after": f"{stuck_after_seconds} seconds"}))
        except (ApiError, ValidationError) as exc:
            log.warning("ops_stats failed; /metrics serves the counters only: %s", exc)
        return generate_latest(self.registry) + generate_latest(_Snapshot(stats, stuck_after_seconds))


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
