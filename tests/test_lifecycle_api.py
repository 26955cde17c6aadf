"""A session's whole life over real HTTP, on the real stack (only Stripe's API is the stub)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg

from pysvc.local.stack import StackInfo
from pysvc.settings import Settings
from tests.stripe_stub import StripeStub, event
from tests.utils.app import api_settings, running_api
from tests.utils.stripe import bearer, deliver, run_outbox

Db = psycopg.Connection[dict[str, Any]]
Token = Callable[[uuid.UUID], str]


def free_session(api: httpx.Client, token: str, *, sign: bool = True) -> str:
    """A free session through the API, its waiver signed (a mechanic may start it) unless told not to."""
    r = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    if sign:
        signed = api.post(f"/api/intake/{r.json()['intakeId']}/waiver", headers=bearer(token))
        assert signed.status_code == 200, signed.text
    return str(r.json()["sessionId"])


def test_a_session_lives_from_intake_to_completion_and_frees_the_customer(
    api: httpx.Client, customer: uuid.UUID, user_token: Token, make_mechanic: Callable[..., uuid.UUID],
) -> None:
    me, mechanic = user_token(customer), user_token(make_mechanic())
    session_id = free_session(api, me)
    second = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(me))
    queue = api.get("/api/mechanic/queue", headers=bearer(mechanic)).json()
    assignment = next(q["assignmentId"] for q in queue if q["sessionId"] == session_id)

    accepted = api.post(f"/api/assignments/{assignment}/accept", headers=bearer(mechanic))
    live = api.post(f"/api/sessions/{session_id}/start", headers=bearer(mechanic))
    done = api.post(f"/api/sessions/{session_id}/complete", headers=bearer(mechanic))
    detail = api.get(f"/api/sessions/{session_id}", headers=bearer(me))
    again = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(me))

    assert (second.status_code, second.json()["activeSessionId"]) == (409, session_id)
    assert [r.json()["status"] for r in (accepted, live, done)] == ["waiting", "live", "completed"]
    assert [e["event"] for e in detail.json()["timeline"]] == ["created", "assigned", "started", "ended"]
    assert again.status_code == 200


def test_thirty_mechanics_accepting_at_once_give_one_winner(
    api: httpx.Client, customer: uuid.UUID, user_token: Token, make_mechanic: Callable[..., uuid.UUID], db: Db,
) -> None:
    session_id = free_session(api, user_token(customer))
    row = db.execute("select id from public.session_assignments where session_id = %s", (session_id,)).fetchone()
    assert row is not None
    tokens = [user_token(make_mechanic()) for _ in range(30)]

    with ThreadPoolExecutor(30) as pool:
        replies = list(pool.map(
            lambda t: api.post(f"/api/assignments/{row['id']}/accept", headers=bearer(t)), tokens))

    assert sorted(r.status_code for r in replies) == [200] + [409] * 29
    assert {r.json()["code"] for r in replies if r.status_code == 409} == {"ASSIGNMENT_TAKEN"}


def test_a_customer_cannot_cancel_or_see_another_customers_session(
    api: httpx.Client, customer: uuid.UUID, user_token: Token, make_user: Callable[[], uuid.UUID],
) -> None:
    session_id = free_session(api, user_token(customer))
    stranger = user_token(make_user())

    assert api.post(f"/api/sessions/{session_id}/cancel", headers=bearer(stranger)).status_code == 404
    assert api.get(f"/api/sessions/{session_id}", headers=bearer(stranger)).status_code == 404


def test_cancelling_a_paid_session_many_times_refunds_it_once(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token,
    paid_checkout: Callable[..., dict[str, Any]], stripe_settings: Settings,
) -> None:
    checkout = paid_checkout()
    session_id = deliver(api, event("checkout.session.completed", checkout)).json()["sessionId"]

    with ThreadPoolExecutor(10) as pool:
        cancels = list(pool.map(
            lambda _: api.post(f"/api/sessions/{session_id}/cancel", headers=bearer(user_token(customer))), range(10)))
    once_more = api.post(f"/api/sessions/{session_id}/cancel", headers=bearer(user_token(customer)))
    run_outbox(stripe_settings)
    run_outbox(stripe_settings)

    assert {r.status_code for r in [*cancels, once_more]} == {200}
    assert [r.json()["changed"] for r in [*cancels, once_more]].count(True) == 1
    refunds = [c for c in stripe_stub.calls_to("POST", "/v1/refunds")
               if c.params.get("metadata[checkout_session_id]") == checkout["id"]]
    assert len(refunds) == 1 and refunds[0].idempotency_key == f"refund-{checkout['id']}"
    events = [r["event_type"] for r in db.execute(
        "select event_type from public.session_events where session_id = %s", (session_id,)).fetchall()]
    assert (events.count("cancelled"), events.count("refunded")) == (1, 1)


def test_refunds_wait_while_stripe_is_down_and_a_refusal_is_kept_as_failed(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token,
    paid_checkout: Callable[..., dict[str, Any]], stripe_settings: Settings, make_user: Callable[[], uuid.UUID],
) -> None:
    checkout = paid_checkout()
    session_id = deliver(api, event("checkout.session.completed", checkout)).json()["sessionId"]
    stripe_stub.failures["/v1/refunds"] = (500, {"error": {"type": "api_error", "message": "down"}})
    api.post(f"/api/sessions/{session_id}/cancel", headers=bearer(user_token(customer)))
    try:
        run_outbox(stripe_settings)
        while_down = db.execute("select status, last_error from public.stripe_outbox where session_id = %s",
                                (session_id,)).fetchone()
        stripe_stub.failures["/v1/refunds"] = (400, {"error": {
            "type": "invalid_request_error", "code": "charge_already_refunded", "message": "already refunded"}})
        db.execute("update public.stripe_outbox set next_attempt_at = now() where session_id = %s", (session_id,))
        run_outbox(stripe_settings)
    finally:
        del stripe_stub.failures["/v1/refunds"]
    refused = db.execute("select status, last_error from public.stripe_outbox where session_id = %s",
                         (session_id,)).fetchone()

    assert while_down is not None and while_down["status"] == "pending" and while_down["last_error"]
    assert refused is not None and refused["status"] == "failed" and "already refunded" in refused["last_error"]


def test_credits_buy_a_session_at_once_and_come_back_on_cancel(
    api: httpx.Client, db: Db, customer: uuid.UUID, user_token: Token,
) -> None:
    me = bearer(user_token(customer))
    poor = api.post("/api/intake/start", json={"plan": "standard", "payment_method": "credits"}, headers=me)
    db.execute("insert into public.credit_entries (customer_user_id, delta, reason) values (%s, 5, 'grant')",
               (customer,))
    bought = api.post("/api/intake/start", json={"plan": "standard", "payment_method": "credits"}, headers=me)
    spent = api.get("/api/credits", headers=me).json()["balance"]
    api.post(f"/api/sessions/{bought.json()['sessionId']}/cancel", headers=me)
    api.post(f"/api/sessions/{bought.json()['sessionId']}/cancel", headers=me)

    assert (poor.status_code, poor.json()["code"], poor.json()["required"], poor.json()["balance"]) == (
        402, "INSUFFICIENT_CREDITS", 3, 0)
    assert bought.status_code == 200
    assert (spent, api.get("/api/credits", headers=me).json()["balance"]) == (2, 5)


def test_serve_expires_unaccepted_sessions_by_itself(
    stack: StackInfo, db: Db, customer: uuid.UUID, user_token: Token,
) -> None:
    settings = api_settings(stack, background_interval_seconds=0.2)
    with running_api(settings) as base, httpx.Client(base_url=base) as api:
        session_id = free_session(api, user_token(customer))
        db.execute("update public.session_assignments set offered_at = now() - interval '1 hour'"
                   " where session_id = %s", (session_id,))
        deadline = time.monotonic() + 10
        me = bearer(user_token(customer))
        while api.get(f"/api/sessions/{session_id}", headers=me).json()["status"] != "expired":
            assert time.monotonic() < deadline, "the background sweep did not expire the session"
            time.sleep(0.2)
        again = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(customer)))

    assert again.status_code == 200
