"""GET /metrics over real HTTP on the real stack: the counters move as the service works, the backlog
gauges are the database's numbers at scrape time, and METRICS_TOKEN closes the endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pysvc.local.stack import StackInfo
from tests.stripe_stub import event
from tests.utils.app import api_settings, running_api
from tests.utils.stripe import bearer, deliver

Db = psycopg.Connection[dict[str, Any]]
Token = Callable[[uuid.UUID], str]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client, **headers: str) -> Samples:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_free_intake_counts_one_free_session_and_its_rpc(
    api: httpx.Client, customer: uuid.UUID, user_token: Token,
) -> None:
    before = scrape(api)
    r = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(customer)))
    assert r.status_code == 200, r.text
    after = scrape(api)

    assert moved(before, after, "pysvc_sessions_created_total", payment_method="free") == 1
    assert moved(before, after, "pysvc_sessions_created_total", payment_method="stripe") == 0
    assert moved(before, after, "pysvc_rpc_duration_seconds_count", function="create_session_record") == 1
    assert moved(before, after, "pysvc_rpc_duration_seconds_sum", function="create_session_record") > 0
    assert value(after, "pysvc_rpc_duration_seconds_bucket", function="create_session_record", le="+Inf") == value(
        after, "pysvc_rpc_duration_seconds_count", function="create_session_record")


def test_webhook_events_are_counted_by_type_and_outcome(
    api: httpx.Client, paid_checkout: Callable[..., dict[str, Any]],
) -> None:
    evt = event("checkout.session.completed", paid_checkout())
    unknown = event("customer.created", {"id": "cus_test_metrics", "object": "customer"})
    before = scrape(api)
    replies = [deliver(api, evt), deliver(api, evt), deliver(api, unknown)]
    after = scrape(api)

    assert [r.status_code for r in replies] == [200, 200, 200], [r.text for r in replies]
    completed = "checkout.session.completed"
    assert moved(before, after, "pysvc_webhook_events_total", type=completed, outcome="processed") == 1
    assert moved(before, after, "pysvc_webhook_events_total", type=completed, outcome="duplicate") == 1
    # A type with no handler is "other": the label cannot grow with whatever Stripe sends.
    assert moved(before, after, "pysvc_webhook_events_total", type="other", outcome="ignored") == 1
    assert value(after, "pysvc_webhook_events_total", type="customer.created", outcome="ignored") == 0
    assert moved(before, after, "pysvc_sessions_created_total", payment_method="stripe") == 1
    assert moved(before, after, "pysvc_rpc_duration_seconds_count", function="record_stripe_event") == 3


@pytest.fixture
def backlog(db: Db) -> Iterator[list[str]]:
    """Inbox and outbox rows written directly; removed afterwards so no replay or worker meets them."""
    ids: list[str] = []
    yield ids
    db.execute("delete from public.stripe_events where id = any(%s)", (ids,))
    db.execute("delete from public.stripe_outbox where checkout_session_id = any(%s)", (ids,))


def test_backlog_gauges_are_the_database_numbers_at_scrape_time(api: httpx.Client, db: Db, backlog: list[str]) -> None:
    before = scrape(api)
    fresh, stuck, failed = (f"evt_test_metrics_{uuid.uuid4().hex}" for _ in range(3))
    checkout = f"cs_test_metrics{uuid.uuid4().hex}"
    backlog.extend([fresh, stuck, failed, checkout])
    insert = ("insert into public.stripe_events (id, type, status, payload, received_at)"
              " values (%s, 'checkout.session.completed', %s, '{}', now() - %s::interval)")
    db.execute(insert, (fresh, "received", "1 minute"))
    db.execute(insert, (stuck, "received", "11 minutes"))  # past the 10-minute threshold
    db.execute(insert, (failed, "failed", "1 minute"))
    db.execute("insert into public.stripe_outbox (kind, checkout_session_id, status, idempotency_key)"
               " values ('refund', %s, 'failed', 'refund-' || %s)",
               (checkout, checkout))
    after = scrape(api)

    assert value(after, "pysvc_ops_stats_up") == 1
    assert moved(before, after, "pysvc_stripe_inbox_events", state="received") == 2
    assert moved(before, after, "pysvc_stripe_inbox_events", state="stuck") == 1
    assert moved(before, after, "pysvc_stripe_inbox_events", state="failed") == 1
    assert moved(before, after, "pysvc_stripe_outbox_requests", kind="refund", status="failed") == 1
    # Every kind and status is there even at 0, so an alert's series never vanishes.
    assert {(dict(labels)["kind"], dict(labels)["status"]) for name, labels in after
            if name == "pysvc_stripe_outbox_requests"} >= {
        (kind, status) for kind in ("refund", "expire_checkout") for status in ("pending", "sent", "failed")}
    assert moved(before, after, "pysvc_rpc_duration_seconds_count", function="ops_stats") == 1


def test_metrics_token_when_set_is_required(
    stack: StackInfo, api: httpx.Client, customer: uuid.UUID, user_token: Token,
) -> None:
    token = "metrics-" + uuid.uuid4().hex
    with running_api(api_settings(stack, metrics_token=token)) as base_url, httpx.Client(base_url=base_url) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers=bearer("metrics-wrong"))
        customer_token = client.get("/metrics", headers=bearer(user_token(customer)))
        basic = client.get("/metrics", headers={"Authorization": f"Basic {token}"})
        own = scrape(client, Authorization=f"Bearer {token}")
        schema = client.get("/openapi.json").json()

    for refused in (missing, wrong, customer_token, basic):
        assert refused.status_code == 401
        assert refused.json()["code"] == "UNAUTHENTICATED"
        assert refused.headers["www-authenticate"] == "Bearer"
    # Each app has its own registry: this new app has counted nothing the shared one did.
    assert value(own, "pysvc_sessions_created_total", payment_method="free") == 0
    assert "/metrics" not in schema["paths"]
    assert scrape(api)  # unset: open
