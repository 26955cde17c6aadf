"""Prometheus counters of this process, one registry per app (tests run several apps in one process).

Counted as things happen: webhook events by type and outcome, sessions created by payment method,
PostgREST RPC latency by function. Built once per app (`pysvc.deps.Services.build`) and handed to
what it counts; `pysvc.ops_stats` serves them with the database's numbers on `GET /metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pysvc.enums import PaymentMethod

OTHER = "other"  # every webhook event type without a handler: the `type` label stays bounded
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
        self.background_last_success = Gauge(
            "pysvc_background_last_success_timestamp_seconds", "When each background step of this process "
            "(sweep, outbox, reconcile) last succeeded, as a Unix time; absent until its first success.",
            ("job",), registry=self.registry,
        )
        self.background_failures = Counter(
            "pysvc_background_failures", "Background steps that failed, by step and kind (backend: a backend "
            "was down or refused; unexpected: any other exception, logged with its traceback).",
            ("job", "kind"), registry=self.registry,
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

    def background_succeeded(self, job: str, at: float) -> None:
        self.background_last_success.labels(job=job).set(at)

    def background_failed(self, job: str, kind: str) -> None:
        self.background_failures.labels(job=job, kind=kind).inc()

    @contextmanager
    def time_rpc(self, function: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.rpc_duration.labels(function=function).observe(time.perf_counter() - started)

    def rpc_observe(self, function: str, seconds: float) -> None:
        """One RPC round trip's duration (`pysvc_rpc_duration_seconds`)."""
        child = self._rpc.get(function)
        if child is None:
            child = self._rpc[function] = self.rpc_duration.labels(function=function)
        child.observe(seconds)
