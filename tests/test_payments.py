"""Money is conserved (issue 15): every Checkout Stripe took money for ends as exactly one session or
one full refund, whatever the customer, Stripe or an operator does meanwhile. Real stack, real
HTTP, real signatures; only Stripe's API is the local stub."""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pysvc import stripe_api
from pysvc.settings import Settings
from tests.stripe_stub import StripeStub, event
from tests.utils.cli import pysvc
from tests.utils.payments import payment
from tests.utils.stripe import bearer, deliver, run_outbox, stripe_stub_server

Db = psycopg.Connection[dict[str, Any]]
Token = Callable[[uuid.UUID], str]
Counts = Callable[[uuid.UUID], dict[str, int]]
PaidCheckout = Callable[..., dict[str, Any]]
JSON = {"Accept": "application/json"}


def refunds_of(stub: StripeStub, checkout_id: str) -> list[Any]:
    """Refund requests this service sent to Stripe for the checkout."""
    return [c for c in stub.calls_to("POST", "/v1/refunds")
            if c.params.get("metadata[checkout_session_id]") == checkout_id]


def session_events(db: Db, session_id: str) -> list[str]:
    rows = db.execute("select event_type from public.session_events where session_id = %s order by id",
                      (session_id,)).fetchall()
    return [r["event_type"] for r in rows]


def checkout_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def cancel(api: httpx.Client, token: str, session_id: str) -> None:
    r = api.post(f"/api/sessions/{session_id}/cancel", headers=bearer(token))
    assert r.status_code == 200, r.text


@pytest.fixture
def plan(db: Db) -> Iterator[str]:
    """A paid plan the test may reprice or withdraw, put back as it was afterwards (the API caches
    the catalog for 30 s, so a plan made for the test would not be on sale yet)."""
    row = db.execute("select price_cents, active from public.plans where code = 'diagnostic'").fetchone()
    assert row is not None
    yield "diagnostic"
    db.execute("update public.plans set price_cents = %s, active = %s where code = 'diagnostic'",
               (row["price_cents"], row["active"]))


@pytest.fixture
def own_stripe() -> Iterator[StripeStub]:
    """A Stripe of this test's own: its list holds only the checkouts the test puts there."""
    with stripe_stub_server() as stub:
        yield stub


# --- a refunded checkout never buys a session ---------------------------------------------------

def test_a_checkout_refunded_for_a_conflict_buys_no_session_from_the_landing_page_replay_or_reconcile(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, own_stripe: StripeStub, customer: uuid.UUID,
    user_token: Token, paid_checkout: PaidCheckout, stripe_settings: Settings, counts: Counts, tmp_path: Path,
) -> None:
    token = user_token(customer)
    checkout = paid_checkout(pay=False)
    free = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(token)).json()
    paid = stripe_stub.pay(checkout["id"])
    completed = event("checkout.session.completed", paid)
    assert deliver(api, completed).json()["status"] == "refunded"
    cancel(api, token, free["sessionId"])
    own_stripe.sessions[paid["id"]] = stripe_stub.sessions[paid["id"]]  # reconcile lists only this one

    landing = api.get("/api/checkout/success", params={"session_id": paid["id"]}, headers=JSON)
    replayed = pysvc(stripe_settings, stripe_stub.base_url, "stripe", "replay", completed["id"], cwd=tmp_path)
    reconciled = pysvc(stripe_settings, own_stripe.base_url, "stripe", "reconcile", "--since", "1d", cwd=tmp_path)

    assert 400 <= landing.status_code < 500 and landing.json()["code"] != "INTERNAL_ERROR", landing.text
    assert replayed.returncode == 0 and f"{completed['id']}  refunded" in replayed.stdout, replayed.stdout
    assert reconciled.returncode == 0 and f"{paid['id']}  refunded" in reconciled.stdout, reconciled.stdout
    assert counts(customer)["sessions"] == 1  # the free one, cancelled
    sent = refunds_of(stripe_stub, paid["id"]) + refunds_of(own_stripe, paid["id"])
    assert len(sent) == 1 and sent[0].params["amount"] == str(paid["amount_total"])
    assert payment(db, paid["id"])["status"] == "refunded"
    assert payment(db, paid["id"])["amount_refunded"] == paid["amount_total"]


# --- the catalog changes between the waiver and the payment -------------------------------------

CHANGES = {
    "price raised": "update public.plans set price_cents = 6999 where code = %(plan)s",
    "plan deactivated": "update public.plans set active = false where code = %(plan)s",
    "preferred mechanic deactivated": "update public.mechanics set active = false where user_id = %(mechanic)s",
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_checkout_paid_after_the_catalog_changed_buys_the_session_it_was_sold(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token, plan: str,
    make_mechanic: Callable[..., uuid.UUID], change: str,
) -> None:
    mechanic = make_mechanic()
    me = bearer(user_token(customer))
    intake_id = api.post("/api/intake/start", headers=me, json={
        "plan": plan, "preferred_mechanic_id": str(mechanic), "routing_type": "workshop_only"}).json()["intakeId"]
    opened = checkout_id(api.post(f"/api/intake/{intake_id}/waiver", headers=me).json()["checkoutUrl"])
    db.execute(CHANGES[change], {"plan": plan, "mechanic": mechanic})

    r = deliver(api, event("checkout.session.completed", stripe_stub.pay(opened)))

    assert (r.status_code, r.json()["status"]) == (200, "processed"), r.text
    session = db.execute("select plan, status, metadata, preferred_mechanic_id, routing_type from public.sessions"
                         " where id = %s",
                         (r.json()["sessionId"],)).fetchone()
    assert session is not None and (session["plan"], session["status"], session["metadata"]["amount_paid"]) == (
        plan, "pending", 4999)  # the price the customer was shown
    if change == "preferred mechanic deactivated":
        routing = (session["preferred_mechanic_id"], session["routing_type"])
        assert routing == (None, "broadcast")
    assert payment(db, opened)["status"] == "consumed"
    assert refunds_of(stripe_stub, opened) == []


# --- refunds made outside the service -----------------------------------------------------------

def test_a_partial_then_the_remaining_dashboard_refund_cancels_the_session_once_and_we_refund_nothing(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, paid_checkout: PaidCheckout, stripe_settings: Settings,
) -> None:
    checkout = paid_checkout()
    session_id = deliver(api, event("checkout.session.completed", checkout)).json()["sessionId"]

    partial = [deliver(api, evt) for evt in stripe_stub.dashboard_refund(checkout["payment_intent"], 1000)]
    rest = [deliver(api, evt) for evt in stripe_stub.dashboard_refund(checkout["payment_intent"])]
    run_outbox(stripe_settings)

    assert {r.status_code for r in partial + rest} == {200}
    row = db.execute("select status from public.sessions where id = %s", (session_id,)).fetchone()
    assert row == {"status": "cancelled"}
    assert session_events(db, session_id).count("cancelled") == 1
    assert session_events(db, session_id).count("refunded") == 1
    assert (payment(db, checkout["id"])["status"], payment(db, checkout["id"])["amount_refunded"]) == (
        "refunded", checkout["amount_total"])
    assert refunds_of(stripe_stub, checkout["id"]) == []


# --- a refund that fails later ------------------------------------------------------------------

def metric(api: httpx.Client, name: str) -> float:
    text = api.get("/metrics").text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_a_refund_stripe_fails_later_shows_as_refund_failed_in_metrics_audit_and_session_view(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token,
    paid_checkout: PaidCheckout, stripe_settings: Settings,
) -> None:
    checkout = paid_checkout()
    session_id = deliver(api, event("checkout.session.completed", checkout)).json()["sessionId"]
    cancel(api, user_token(customer), session_id)
    run_outbox(stripe_settings)
    paid_id = payment(db, checkout["id"])["id"]
    refund_id = db.execute("select stripe_object_id from public.stripe_outbox"
                           " where payment_id = %s and kind = 'refund'", (paid_id,)).fetchone()
    assert refund_id is not None and refund_id["stripe_object_id"].startswith("re_")

    replies = [deliver(api, evt) for evt in stripe_stub.fail_refund(refund_id["stripe_object_id"])]

    assert [r.status_code for r in replies] == [200] * 3, [r.text for r in replies]
    assert payment(db, checkout["id"])["status"] == "refund_failed"
    assert metric(api, 'pysvc_payments{status="refund_failed"}') >= 1
    assert metric(api, "pysvc_payment_audit_violations") >= 1
    audit = db.execute("select public.payment_audit() as a").fetchone()
    assert audit is not None
    mine = [v for v in audit["a"] if v["checkout_session_id"] == checkout["id"]]
    assert [v["status"] for v in mine] == ["refund_failed"] and "insufficient_funds" in mine[0]["problem"]
    view = api.get(f"/api/sessions/{session_id}", headers=bearer(user_token(customer)))
    assert view.status_code == 200 and view.json()["payment"]["status"] == "refund_failed"


# --- idempotent Checkout requests ---------------------------------------------------------------

def test_two_waiver_clicks_a_second_apart_while_stripe_is_slow_open_one_checkout(
    api: httpx.Client, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token,
) -> None:
    me = bearer(user_token(customer))
    intake_id = api.post("/api/intake/start", json={"plan": "standard"}, headers=me).json()["intakeId"]

    def click(after: float) -> httpx.Response:
        time.sleep(after)
        return api.post(f"/api/intake/{intake_id}/waiver", headers=me)

    stripe_stub.delay("/v1/checkout/sessions", 2)
    try:
        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(click, [0, 1])
    finally:
        stripe_stub.delay("/v1/checkout/sessions", 0)

    opened = [s for s in stripe_stub.sessions.values() if s["metadata"].get("intake_id") == intake_id]
    assert len(opened) == 1
    assert first.status_code == 200, first.text
    assert first.json()["checkoutUrl"] == opened[0]["url"]
    if second.status_code == 409:
        assert second.json()["code"] == "CHECKOUT_IN_PROGRESS" and "retry-after" in second.headers
    else:
        assert second.status_code == 200 and second.json()["checkoutUrl"] == opened[0]["url"]


def test_a_waiver_retried_after_stripe_created_the_checkout_but_the_answer_was_lost_sends_the_identical_request(
    api: httpx.Client, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token,
) -> None:
    me = bearer(user_token(customer))
    intake_id = api.post("/api/intake/start", json={"plan": "standard"}, headers=me).json()["intakeId"]

    stripe_stub.drop_reply_once("/v1/checkout/sessions")
    first = api.post(f"/api/intake/{intake_id}/waiver", headers=me)
    again = first if first.status_code == 200 else api.post(f"/api/intake/{intake_id}/waiver", headers=me)

    sent = [c for c in stripe_stub.calls_to("POST", "/v1/checkout/sessions")
            if c.params.get("metadata[intake_id]") == intake_id]
    assert len(sent) >= 2  # the lost one and its retry
    assert {c.idempotency_key for c in sent} == {sent[0].idempotency_key}
    assert all(c.params == sent[0].params for c in sent)
    opened = [s for s in stripe_stub.sessions.values() if s["metadata"].get("intake_id") == intake_id]
    assert len(opened) == 1
    assert again.status_code == 200 and again.json()["checkoutUrl"] == opened[0]["url"]


# --- the landing page ---------------------------------------------------------------------------

def test_a_checkout_this_service_never_opened_is_404_on_the_landing_page_without_asking_stripe(
    api: httpx.Client, stripe_stub: StripeStub,
) -> None:
    stranger = stripe_stub.checkout_session(payment_status="paid", status="complete", amount_total=2999,
                                            currency="usd", mode="payment")
    before = len(stripe_stub.calls)

    r = api.get("/api/checkout/success", params={"session_id": stranger["id"]}, headers=JSON)

    assert (r.status_code, r.json()["code"]) == (404, "CHECKOUT_NOT_FOUND")
    assert stripe_stub.calls[before:] == []


# --- the outbox ---------------------------------------------------------------------------------

def test_the_outbox_lease_outlasts_one_stripe_call_with_all_its_retries() -> None:
    longest_call = stripe_api.STRIPE_TIMEOUT_SECONDS * (stripe_api.STRIPE_RETRIES + 1)

    assert longest_call < stripe_api.REQUEST_LEASE_SECONDS
    assert stripe_api.REQUEST_LEASE_SECONDS > 60  # the old lease, which one slow call outlived


def test_a_refund_finished_by_another_worker_counts_as_done_and_is_sent_once(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token,
    paid_checkout: PaidCheckout, stripe_settings: Settings,
) -> None:
    checkout = paid_checkout()
    session_id = deliver(api, event("checkout.session.completed", checkout)).json()["sessionId"]
    cancel(api, user_token(customer), session_id)
    row = db.execute("select id from public.stripe_outbox where payment_id = %s and kind = 'refund'",
                     (payment(db, checkout["id"])["id"],)).fetchone()
    assert row is not None
    slow = db.execute("select public.claim_stripe_request(%s, '1 millisecond') as r", (row["id"],)).fetchone()
    assert slow is not None and slow["r"]["id"] == row["id"]  # a worker whose Stripe call outlives its lease
    time.sleep(0.05)

    run_outbox(stripe_settings)  # another worker claims it again, sends it, finishes it
    late = db.execute("select public.finish_stripe_request(%s, 'sent', 're_late') as r", (row["id"],)).fetchone()

    assert late is not None and late["r"]["changed"] is False and late["r"]["status"] == "sent"
    assert late["r"]["stripe_object_id"] != "re_late"
    assert len(refunds_of(stripe_stub, checkout["id"])) == 1
    assert payment(db, checkout["id"])["status"] == "refunded"


def test_a_webhook_that_decides_a_refund_sends_only_its_own_request(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, make_user: Callable[[], uuid.UUID], user_token: Token,
    stripe_settings: Settings,
) -> None:
    other, conflicted = make_user(), make_user()

    def checkout_of(who: uuid.UUID) -> dict[str, Any]:
        me = bearer(user_token(who))
        intake_id = api.post("/api/intake/start", json={"plan": "quick"}, headers=me).json()["intakeId"]
        url = api.post(f"/api/intake/{intake_id}/waiver", headers=me).json()["checkoutUrl"]
        return stripe_stub.pay(checkout_id(url))

    queued = checkout_of(other)
    session_id = deliver(api, event("checkout.session.completed", queued)).json()["sessionId"]
    cancel(api, user_token(other), session_id)  # its refund is queued, due now
    refused = checkout_of(conflicted)
    api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(conflicted)))

    r = deliver(api, event("checkout.session.completed", refused))

    assert r.json()["status"] == "refunded"
    assert len(refunds_of(stripe_stub, refused["id"])) == 1
    assert refunds_of(stripe_stub, queued["id"]) == []
    row = db.execute("select status from public.stripe_outbox where payment_id = %s and kind = 'refund'",
                     (payment(db, queued["id"])["id"],)).fetchone()
    assert row == {"status": "pending"}
    run_outbox(stripe_settings)  # the worker's job, not the webhook's
    assert len(refunds_of(stripe_stub, queued["id"])) == 1


# --- a seeded randomized workload ---------------------------------------------------------------

SCENARIOS = ("free", "paid", "landing", "async", "async declined", "conflict", "cancel", "expiry",
             "outside partial", "outside full", "dispute", "checkout expired", "redelivered")


def test_a_seeded_random_workload_leaves_every_paid_checkout_as_one_session_or_one_full_refund(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, own_stripe: StripeStub,
    make_user: Callable[[], uuid.UUID], user_token: Token, stripe_settings: Settings, tmp_path: Path,
) -> None:
    rng = random.Random(1234)
    started = time.monotonic()
    customers = [make_user() for _ in range(20)]
    replayable: list[str] = []
    checkouts: list[str] = []

    def waiver(me: dict[str, str]) -> str:
        intake_id = api.post("/api/intake/start", json={"plan": rng.choice(["quick", "standard"])},
                             headers=me).json()["intakeId"]
        opened = checkout_id(api.post(f"/api/intake/{intake_id}/waiver", headers=me).json()["checkoutUrl"])
        checkouts.append(opened)
        return opened

    def delivered(evt: dict[str, Any]) -> dict[str, Any]:
        r = deliver(api, evt)
        assert r.status_code == 200, r.text
        replayable.append(evt["id"])
        return dict(r.json())

    for who in customers:
        me = bearer(user_token(who))
        scenario = rng.choice(SCENARIOS)
        if scenario == "free":
            assert api.post("/api/intake/start", json={"plan": "free"}, headers=me).status_code == 200
            continue
        opened = waiver(me)
        if scenario == "checkout expired":
            delivered(event("checkout.session.expired", stripe_stub.expire(opened)))
            continue
        if scenario == "conflict":
            api.post("/api/intake/start", json={"plan": "free"}, headers=me)
        if scenario.startswith("async"):
            delivered(event("checkout.session.completed", stripe_stub.pay(opened, async_payment=True)))
            settled = stripe_stub.settle_async(opened, succeeded=scenario == "async")
            kind = "succeeded" if scenario == "async" else "failed"
            delivered(event(f"checkout.session.async_payment_{kind}", settled))
            continue
        paid = stripe_stub.pay(opened)
        completed = event("checkout.session.completed", paid)
        if scenario == "landing":
            assert api.get("/api/checkout/success", params={"session_id": opened}, headers=JSON).status_code == 200
        if scenario == "redelivered":
            with ThreadPoolExecutor(6) as pool:
                assert {r.status_code for r in pool.map(lambda e: deliver(api, e), [completed] * 6)} == {200}
            continue
        answer = delivered(completed)
        session_id = answer.get("sessionId")
        if scenario == "cancel":
            cancel(api, user_token(who), session_id)
        elif scenario == "expiry":
            db.execute("update public.session_assignments set offered_at = now() - interval '2 hours'"
                       " where session_id = %s", (session_id,))
            db.execute("select public.expire_sessions()")
        elif scenario.startswith("outside"):
            amount = rng.randint(100, 900) if scenario == "outside partial" else None
            for evt in stripe_stub.dashboard_refund(paid["payment_intent"], amount):
                delivered(evt)
        elif scenario == "dispute":
            delivered(event("charge.dispute.created", {
                "id": f"dp_{uuid.uuid4().hex[:24]}", "object": "dispute", "reason": "fraudulent",
                "payment_intent": paid["payment_intent"], "amount": paid["amount_total"]}))
        if rng.random() < 0.3:
            run_outbox(stripe_settings)

    for opened in checkouts:  # reconcile sees this test's checkouts only
        own_stripe.sessions[opened] = stripe_stub.sessions[opened]
    replayed = pysvc(stripe_settings, stripe_stub.base_url, "stripe", "replay", *rng.sample(replayable, 8),
                     cwd=tmp_path)
    reconciled = pysvc(stripe_settings, own_stripe.base_url, "stripe", "reconcile", "--since", "1d", cwd=tmp_path)
    run_outbox(stripe_settings)
    run_outbox(stripe_settings)

    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    ours = db.execute("select id::text as id from public.payments where customer_user_id = any(%s)"
                      " union all select id::text from public.sessions where customer_user_id = any(%s)",
                      (customers, customers)).fetchall()
    mine = {r["id"] for r in ours}
    audit = db.execute("select public.payment_audit(null, '0 seconds') as a").fetchone()
    assert audit is not None
    assert [v for v in audit["a"] if {str(v["payment_id"]), str(v["session_id"])} & mine] == []
    assert all(len(refunds_of(stripe_stub, c) + refunds_of(own_stripe, c)) <= 1 for c in checkouts)
    assert time.monotonic() - started < 45
