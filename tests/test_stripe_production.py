"""Stripe as it behaves in production: expiring checkouts, outside refunds and disputes, hostile but
signed events, racing redeliveries, reconciliation and replay. Real stack, real HTTP, real
signatures; only Stripe's API is the local stub."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pysvc.settings import Settings
from tests.stripe_stub import StripeStub, event, fixture
from tests.utils.cli import pysvc
from tests.utils.payments import open_payment, payment
from tests.utils.stripe import bearer, deliver, deliver_raw, run_outbox, stripe_stub_server

Db = psycopg.Connection[dict[str, Any]]
Token = Callable[[uuid.UUID], str]
Counts = Callable[[uuid.UUID], dict[str, int]]
PaidCheckout = Callable[..., dict[str, Any]]


def charge(checkout: dict[str, Any], refunded: int, **fields: Any) -> dict[str, Any]:
    """A charge object for the checkout's payment, as charge.refunded sends it."""
    amount = int(checkout["amount_total"])
    return {"id": f"ch_{uuid.uuid4().hex[:24]}", "object": "charge", "amount": amount, "amount_refunded": refunded,
            "refunded": refunded >= amount, "payment_intent": checkout["payment_intent"],
            "refunds": {"object": "list", "data": [{"id": f"re_{uuid.uuid4().hex[:24]}", "object": "refund"}]},
            **fields}


def session_events(db: Db, session_id: str) -> list[str]:
    rows = db.execute("select event_type from public.session_events where session_id = %s order by id",
                      (session_id,)).fetchall()
    return [r["event_type"] for r in rows]


# --- expiring checkouts -------------------------------------------------------------------------

def test_an_expired_checkout_is_recorded_and_signing_again_opens_a_fresh_one(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token,
) -> None:
    me = bearer(user_token(customer))
    intake_id = api.post("/api/intake/start", json={"plan": "quick"}, headers=me).json()["intakeId"]
    first = api.post(f"/api/intake/{intake_id}/waiver", headers=me).json()["checkoutUrl"].rsplit("/", 1)[1]
    deliver(api, event("checkout.session.expired", stripe_stub.expire(first)))
    second = api.post(f"/api/intake/{intake_id}/waiver", headers=me).json()["checkoutUrl"].rsplit("/", 1)[1]

    rows = db.execute("select checkout_session_id as id, status from public.payments where intake_id = %s"
                      " order by attempt", (intake_id,)).fetchall()
    assert rows == [{"id": first, "status": "expired"}, {"id": second, "status": "open"}]
    assert stripe_stub.sessions[second]["expires_at"] > stripe_stub.sessions[second]["created"] + 29 * 60


def test_an_open_checkout_is_expired_when_the_customer_gets_a_free_session(
    api: httpx.Client, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token,
    stripe_settings: Settings,
) -> None:
    me = bearer(user_token(customer))
    intake_id = api.post("/api/intake/start", json={"plan": "standard"}, headers=me).json()["intakeId"]
    checkout_id = api.post(f"/api/intake/{intake_id}/waiver", headers=me).json()["checkoutUrl"].rsplit("/", 1)[1]

    assert api.post("/api/intake/start", json={"plan": "free"}, headers=me).status_code == 200
    run_outbox(stripe_settings)

    expiries = stripe_stub.calls_to("POST", f"/v1/checkout/sessions/{checkout_id}/expire")
    assert len(expiries) == 1 and expiries[0].idempotency_key == f"expire-checkout-{checkout_id}"
    assert stripe_stub.sessions[checkout_id]["status"] == "expired"  # nothing left to pay


# --- money moved outside the service ------------------------------------------------------------

def test_a_full_refund_from_the_dashboard_cancels_a_pending_session_without_a_second_refund(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, paid_checkout: PaidCheckout, stripe_settings: Settings,
) -> None:
    checkout = paid_checkout()
    session_id = deliver(api, event("checkout.session.completed", checkout)).json()["sessionId"]

    replies = [deliver(api, evt) for evt in stripe_stub.dashboard_refund(checkout["payment_intent"])]
    run_outbox(stripe_settings)

    assert [r.json()["status"] for r in replies] == ["processed", "processed"]
    assert db.execute("select status from public.sessions where id = %s", (session_id,)).fetchone() == {
        "status": "cancelled"}
    assert session_events(db, session_id) == ["created", "cancelled", "refunded"]
    assert not [c for c in stripe_stub.calls_to("POST", "/v1/refunds")
                if c.params.get("metadata[checkout_session_id]") == checkout["id"]]


def test_a_dashboard_refund_settles_a_refund_of_ours_still_queued(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token,
    paid_checkout: PaidCheckout, stripe_settings: Settings,
) -> None:
    checkout = paid_checkout()
    session_id = deliver(api, event("checkout.session.completed", checkout)).json()["sessionId"]
    api.post(f"/api/sessions/{session_id}/cancel", headers=bearer(user_token(customer)))  # refund queued

    for evt in stripe_stub.dashboard_refund(checkout["payment_intent"]):
        deliver(api, evt)
    run_outbox(stripe_settings)

    row = db.execute("select status, payment_intent from public.stripe_outbox where session_id = %s",
                     (session_id,)).fetchone()
    assert row == {"status": "cancelled", "payment_intent": checkout["payment_intent"]}
    assert db.execute("select status from public.payments where session_id = %s", (session_id,)).fetchone() == {
        "status": "refunded"}
    assert not [c for c in stripe_stub.calls_to("POST", "/v1/refunds")
                if c.params.get("metadata[checkout_session_id]") == checkout["id"]]


def test_a_partial_refund_is_only_recorded(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, paid_checkout: PaidCheckout,
) -> None:
    checkout = paid_checkout()
    session_id = deliver(api, event("checkout.session.completed", checkout)).json()["sessionId"]

    for evt in stripe_stub.dashboard_refund(checkout["payment_intent"], 100):
        deliver(api, evt)

    assert db.execute("select status from public.sessions where id = %s", (session_id,)).fetchone() == {
        "status": "pending"}
    assert db.execute("select status, amount_refunded from public.payments where session_id = %s",
                      (session_id,)).fetchone() == {"status": "consumed", "amount_refunded": 100}


def test_a_dispute_flags_the_session_once(api: httpx.Client, db: Db, paid_checkout: PaidCheckout) -> None:
    checkout = paid_checkout()
    session_id = deliver(api, event("checkout.session.completed", checkout)).json()["sessionId"]
    dispute = {"id": f"dp_{uuid.uuid4().hex[:24]}", "object": "dispute", "reason": "fraudulent",
               "payment_intent": checkout["payment_intent"], "amount": checkout["amount_total"]}

    deliver(api, event("charge.dispute.created", dispute))
    deliver(api, event("charge.dispute.created", dispute))

    row = db.execute("select metadata from public.sessions where id = %s", (session_id,)).fetchone()
    assert row is not None and row["metadata"]["disputed"] is True
    assert session_events(db, session_id).count("disputed") == 1


# --- concurrency and hostile input --------------------------------------------------------------

def test_twenty_racing_deliveries_of_a_conflicted_checkout_send_one_refund(
    api: httpx.Client, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token,
    paid_checkout: PaidCheckout,
) -> None:
    checkout = paid_checkout()
    api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(customer)))
    events = [event("checkout.session.completed", checkout) for _ in range(20)]  # redeliveries and retries

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda evt: deliver(api, evt), events))

    assert {r.status_code for r in replies} == {200}
    refunds = [c for c in stripe_stub.calls_to("POST", "/v1/refunds")
               if c.params.get("metadata[checkout_session_id]") == checkout["id"]]
    assert len(refunds) == 1


def _hostile() -> dict[str, bytes]:
    ok = event("checkout.session.completed", fixture("checkout_session"))

    def with_(**fields: Any) -> bytes:
        return json.dumps({**ok, "id": f"evt_test_{uuid.uuid4().hex}", **fields}).encode()

    def with_object(**fields: Any) -> bytes:
        return with_(data={"object": {**ok["data"]["object"], "id": f"cs_test_{uuid.uuid4().hex}", **fields}})

    deep = (b'{"id": "evt_test_deep%s", "type": "checkout.session.completed", "data": %s1%s}'
            % (uuid.uuid4().hex.encode(), b"[" * 5000, b"]" * 5000))
    return {
        "nan": with_(data={"object": {"amount_total": float("nan")}}),
        "lone surrogate": with_(type="checkout.session.completed").replace(b'"type"', b'"\\ud800": 1, "type"'),
        "nul character": with_(data={"object": {"id": "cs_test_a\u0000"}}),
        "deep nesting": deep,
        "data as a string": with_(data="checkout"),
        "object as a list": with_(data={"object": [1, 2]}),
        "metadata as a string": with_object(metadata="plan=standard", payment_status="paid"),
        "customer_details as a list": with_object(customer_details=[1], payment_status="paid"),
        "amount as a string": with_object(amount_total="2999", payment_status="paid"),
        "huge checkout id": with_(data={"object": {**ok["data"]["object"], "id": "cs_test_" + "a" * 5000}}),
        "charge without amounts": with_(type="charge.refunded", data={"object": {"object": "charge", "id": "ch_1"}}),
        "dispute as a number": with_(type="charge.dispute.created", data={"object": 7}),
        "id of another shape": with_(id="evt_" + "!" * 10),
        "type of another type": with_(type=["charge.refunded"]),
        "not an object": b"[1, 2, 3]",
    }


HOSTILE = _hostile()


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_a_hostile_but_signed_event_is_refused_or_recorded_as_failed_never_5xx(
    api: httpx.Client, db: Db, shape: str,
) -> None:
    payload = HOSTILE[shape]

    r = deliver_raw(api, payload)

    assert r.status_code in (200, 400), r.text
    event_id = re.search(rb'"id": "(evt_[^"]*)"', payload)
    stored = db.execute("select status from public.stripe_events where id = %s",
                        (event_id.group(1).decode() if event_id else "",)).fetchone()
    if r.status_code == 400:
        assert stored is None  # refused before anything was written
    else:
        assert r.json()["status"] in ("failed", "ignored")
        assert stored is not None and stored["status"] == r.json()["status"]


# --- reconcile and replay (the CLI, as an operator runs it) ------------------------------------

@pytest.fixture
def own_stripe() -> Iterator[StripeStub]:
    """A Stripe of this test's own: its list holds only this test's checkouts."""
    with stripe_stub_server() as stub:
        yield stub


def paid_on(stub: StripeStub, api: httpx.Client, db: Db, customer: uuid.UUID, token: str, plan: str = "standard",
            price: int = 2999) -> dict[str, Any]:
    """A paid checkout that only Stripe knows about: opened by the waiver, but no webhook was ever delivered."""
    intake_id = api.post("/api/intake/start", json={"plan": plan}, headers=bearer(token)).json()["intakeId"]
    checkout_id = open_payment(db, customer, intake_id)
    payment_id = payment(db, checkout_id)["id"]
    checkout = stub.checkout_session(
        id=checkout_id, status="complete", payment_status="paid", amount_total=price, currency="usd",
        created=1_900_000_000, client_reference_id=str(customer), metadata={
            "customer_id": str(customer), "intake_id": intake_id, "plan": plan, "session_type": "video",
            "payment_id": str(payment_id)})
    stub.sessions[checkout["id"]] = checkout
    return checkout


def test_reconcile_fulfils_what_no_webhook_delivered_and_a_second_run_finds_it_done(
    api: httpx.Client, db: Db, own_stripe: StripeStub, make_user: Callable[[], uuid.UUID], user_token: Token,
    stripe_settings: Settings, counts: Counts, tmp_path: Path,
) -> None:
    paying, conflicted = make_user(), make_user()
    paid = paid_on(own_stripe, api, db, paying, user_token(paying))
    refused = paid_on(own_stripe, api, db, conflicted, user_token(conflicted))
    api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(conflicted)))

    first = pysvc(stripe_settings, own_stripe.base_url, "stripe", "reconcile", "--since", "3650d", cwd=tmp_path)
    second = pysvc(stripe_settings, own_stripe.base_url, "stripe", "reconcile", "--since", "3650d", cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert f"{paid['id']}  fulfilled now" in first.stdout
    assert f"{refused['id']}  refunded" in first.stdout
    assert counts(paying)["sessions"] == 1
    assert len(own_stripe.calls_to("POST", "/v1/refunds")) == 1
    assert second.returncode == 0 and f"{paid['id']}  already fulfilled" in second.stdout


def test_replay_completes_a_failed_event_once_its_cause_is_fixed_and_a_stuck_one(
    api: httpx.Client, db: Db, paid_checkout: PaidCheckout, stripe_settings: Settings,
    stripe_stub: StripeStub, tmp_path: Path, counts: Counts, customer: uuid.UUID,
) -> None:
    checkout = paid_checkout()
    garbled = {**checkout["metadata"], "customer_id": "not-a-uuid"}
    broken = event("checkout.session.completed", {**checkout, "metadata": garbled})  # refused: no customer
    assert deliver(api, broken).json()["status"] == "failed"
    db.execute("update public.stripe_events set payload = jsonb_set(payload, '{data,object,metadata,customer_id}', %s)"
               " where id = %s", (json.dumps(checkout["metadata"]["customer_id"]), broken["id"]))  # the cause, fixed
    stuck = event("checkout.session.completed", checkout)
    db.execute("insert into public.stripe_events (id, type, payload, received_at) values"
               " (%s, %s, %s, now() - interval '1 hour')", (stuck["id"], stuck["type"], json.dumps(stuck)))

    replayed = pysvc(stripe_settings, stripe_stub.base_url, "stripe", "replay", broken["id"], cwd=tmp_path)
    unstuck = pysvc(stripe_settings, stripe_stub.base_url, "stripe", "replay", "--stuck", cwd=tmp_path)

    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"{broken['id']}  processed" in replayed.stdout
    assert f"{stuck['id']}  processed" in unstuck.stdout
    statuses = db.execute("select id, status, attempts from public.stripe_events where id in (%s, %s)",
                          (broken["id"], stuck["id"])).fetchall()
    assert {r["id"]: r["status"] for r in statuses} == {broken["id"]: "processed", stuck["id"]: "processed"}
    assert counts(customer)["sessions"] == 1
