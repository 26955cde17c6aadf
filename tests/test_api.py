"""The HTTP API over real HTTP, on the real stack; only Stripe's HTTP API is a local stub."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pysvc.local.stack import StackInfo, free_port, mint_key
from pysvc.settings import Settings
from tests.stripe_stub import StripeStub, event, sign
from tests.utils.app import api_settings, running_api
from tests.utils.stripe import WEBHOOK_SECRET, bearer, deliver, run_outbox

Db = psycopg.Connection[dict[str, Any]]
Token = Callable[[uuid.UUID], str]
Counts = Callable[[uuid.UUID], dict[str, int]]

JSON = {"Accept": "application/json"}
NOTHING = {"sessions": 0, "participants": 0, "assignments": 0, "events": 0, "debits": 0}
ONE_SESSION = {"sessions": 1, "participants": 1, "assignments": 1, "events": 1, "debits": 0}


def stored_events(db: Db) -> int:
    row = db.execute("select count(*) as n from public.stripe_events").fetchone()
    assert row is not None
    return int(row["n"])


# --- free path --------------------------------------------------------------------------------

def test_free_intake_creates_the_session_and_queues_it_for_mechanics(
    api: httpx.Client, db: Db, customer: uuid.UUID, user_token: Token, counts: Counts,
    rest: httpx.Client, make_mechanic: Callable[..., uuid.UUID],
) -> None:
    r = api.post(
        "/api/intake/start",
        json={"plan": "free", "concern": "grinding noise", "vehicle_year": 2014, "urgent": True},
        headers=bearer(user_token(customer)),
    )

    assert r.status_code == 200, r.text
    session_id = r.json()["sessionId"]
    intake = db.execute("select id, concern, urgent from public.intakes where customer_user_id = %s", (customer,))
    row = intake.fetchone()
    assert row is not None and (row["concern"], row["urgent"]) == ("grinding noise", True)
    assert r.json()["redirect"] == f"/intake/waiver?session={session_id}&plan=free&intake_id={row['id']}"
    assert counts(customer) == ONE_SESSION
    queue = rest.get("/mechanic_queue", params={"session_id": f"eq.{session_id}"},
                     headers=bearer(user_token(make_mechanic())))
    assert [q["urgent"] for q in queue.json()] == [True]


def test_second_intake_is_409_naming_the_active_session(
    api: httpx.Client, db: Db, customer: uuid.UUID, user_token: Token, counts: Counts,
) -> None:
    first = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(customer))).json()
    r = api.post("/api/intake/start", json={"plan": "trial"}, headers=bearer(user_token(customer)))

    assert r.status_code == 409
    assert r.json() == {
        "error": "You already have an active session",
        "code": "ACTIVE_SESSION_EXISTS",
        "activeSessionId": first["sessionId"],
        "activeSessionType": "chat",
        "activeSessionStatus": "pending",
    }
    assert counts(customer) == ONE_SESSION
    intakes = db.execute("select count(*) as n from public.intakes where customer_user_id = %s", (customer,))
    assert intakes.fetchone() == {"n": 1}


def test_a_refused_free_intake_leaves_no_intake_row(
    api: httpx.Client, db: Db, customer: uuid.UUID, user_token: Token,
) -> None:
    api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(customer)))
    refused = api.post("/api/intake/start", json={"plan": "trial", "concern": "again"},
                       headers=bearer(user_token(customer)))

    assert refused.status_code == 409
    rows = db.execute("select plan from public.intakes where customer_user_id = %s", (customer,)).fetchall()
    assert rows == [{"plan": "free"}]


def test_a_retried_intake_with_the_same_id_creates_one_session(
    api: httpx.Client, customer: uuid.UUID, user_token: Token, counts: Counts,
) -> None:
    body = {"plan": "free", "intake_id": str(uuid.uuid4()), "concern": "brakes"}
    with ThreadPoolExecutor(5) as pool:
        replies = list(pool.map(
            lambda _: api.post("/api/intake/start", json=body, headers=bearer(user_token(customer))), range(5)))
    again = api.post("/api/intake/start", json=body, headers=bearer(user_token(customer)))

    assert {r.status_code for r in [*replies, again]} == {200}
    assert len({r.json()["sessionId"] for r in [*replies, again]}) == 1
    assert counts(customer) == ONE_SESSION


def test_active_session_endpoint_returns_the_callers_session_or_404(
    api: httpx.Client, customer: uuid.UUID, user_token: Token,
) -> None:
    assert api.get("/api/sessions/active", headers=bearer(user_token(customer))).status_code == 404
    created = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(customer))).json()
    r = api.get("/api/sessions/active", headers=bearer(user_token(customer)))
    assert r.status_code == 200
    assert r.json()["sessionId"] == created["sessionId"]


@pytest.mark.parametrize(
    "body",
    [
        {"plan": "gold"},
        {"plan": "free", "customer_id": str(uuid.uuid4())},
        {"plan": "free", "vehicle_year": 1066},
        {"plan": "free", "concern": "x" * 5000},
        {"plan": "free", "routing_type": "teleport"},
        {"plan": "free", "preferred_mechanic_id": "bob"},
        {"plan": "free", "preferred_mechanic_id": str(uuid.uuid4())},
        {"plan": "Free; drop table"},
        {},
    ],
)
def test_bad_intake_is_a_4xx_and_writes_nothing(
    api: httpx.Client, db: Db, customer: uuid.UUID, user_token: Token, counts: Counts, body: dict[str, Any],
) -> None:
    r = api.post("/api/intake/start", json=body, headers=bearer(user_token(customer)))

    unknown = body.get("plan") == "gold" or body.get("preferred_mechanic_id", "bob") != "bob"
    assert r.status_code == (404 if unknown else 422), r.text
    assert set(r.json()) == {"error", "code"}
    assert counts(customer) == NOTHING
    assert db.execute("select count(*) as n from public.intakes where customer_user_id = %s",
                      (customer,)).fetchone() == {"n": 0}


def test_malformed_json_is_422(api: httpx.Client, customer: uuid.UUID, user_token: Token) -> None:
    r = api.post("/api/intake/start", content=b"{not json", headers={
        **bearer(user_token(customer)), "Content-Type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_REQUEST")


# --- tokens ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["missing", "garbage", "expired", "foreign_secret", "anon_role", "no_sub"])
def test_bad_user_tokens_are_401(
    api: httpx.Client, mint: Callable[..., str], customer: uuid.UUID, kind: str,
) -> None:
    tokens = {
        "missing": None,
        "garbage": "not.a.jwt",
        "expired": mint("authenticated", sub=str(customer), aud="authenticated", exp=int(time.time()) - 60),
        "foreign_secret": mint_key(secrets.token_urlsafe(48), "authenticated", sub=str(customer), aud="authenticated"),
        "anon_role": mint("anon", sub=str(customer), aud="authenticated"),
        "no_sub": mint("authenticated", aud="authenticated"),
    }
    token = tokens[kind]
    r = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(token) if token else {})
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHENTICATED")


def test_token_of_a_user_that_does_not_exist_is_403(api: httpx.Client, user_token: Token) -> None:
    r = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(uuid.uuid4())))
    assert (r.status_code, r.json()["code"]) == (403, "UNKNOWN_USER")


# --- paid path -------------------------------------------------------------------------------

def test_paid_intake_creates_no_session_and_sends_to_the_waiver(
    api: httpx.Client, customer: uuid.UUID, user_token: Token, counts: Counts,
) -> None:
    r = api.post("/api/intake/start", json={"plan": "standard"}, headers=bearer(user_token(customer)))

    assert r.status_code == 200
    intake_id = r.json()["intakeId"]
    assert r.json() == {"redirect": f"/intake/waiver?plan=standard&intake_id={intake_id}", "intakeId": intake_id}
    assert counts(customer) == NOTHING


def test_paid_intake_while_a_session_is_active_is_409(
    api: httpx.Client, customer: uuid.UUID, user_token: Token,
) -> None:
    api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(customer)))
    r = api.post("/api/intake/start", json={"plan": "diagnostic"}, headers=bearer(user_token(customer)))
    assert (r.status_code, r.json()["code"]) == (409, "ACTIVE_SESSION_EXISTS")


def test_waiver_creates_one_checkout_session_at_the_catalog_price(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token,
) -> None:
    intake_id = api.post(
        "/api/intake/start", json={"plan": "standard", "urgent": True, "routing_type": "hybrid"},
        headers=bearer(user_token(customer)),
    ).json()["intakeId"]

    first = api.post(f"/api/intake/{intake_id}/waiver", headers=bearer(user_token(customer)))
    second = api.post(f"/api/intake/{intake_id}/waiver", headers=bearer(user_token(customer)))

    assert first.status_code == 200, first.text
    assert first.json() == second.json()
    calls = [c for c in stripe_stub.calls_to("POST", "/v1/checkout/sessions")
             if c.params.get("metadata[intake_id]") == intake_id]
    [payment] = db.execute("select id, status, amount, request from public.payments where intake_id = %s",
                           (intake_id,)).fetchall()
    assert len(calls) == 1 and calls[0].idempotency_key == f"checkout-{payment['id']}"
    assert (payment["status"], payment["amount"]) == ("open", 2999)
    params = calls[0].params
    assert params["mode"] == "payment"
    assert params["client_reference_id"] == str(customer)
    assert (params["line_items[0][price_data][unit_amount]"], params["line_items[0][price_data][currency]"]) == (
        "2999", "usd")
    assert {k[9:-1]: v for k, v in params.items() if k.startswith("metadata[")} == {
        "customer_id": str(customer), "intake_id": intake_id, "plan": "standard", "session_type": "video",
        "payment_id": str(payment["id"]),
    }
    assert params["success_url"] == "http://shop.example/api/checkout/success?session_id={CHECKOUT_SESSION_ID}"
    signed = db.execute("select waiver_signed_at from public.intakes where id = %s", (intake_id,)).fetchone()
    assert signed is not None and signed["waiver_signed_at"] is not None


def test_free_waiver_answers_the_waiting_room(api: httpx.Client, customer: uuid.UUID, user_token: Token) -> None:
    started = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(customer))).json()
    intake_id = started["redirect"].rsplit("intake_id=", 1)[1]
    r = api.post(f"/api/intake/{intake_id}/waiver", headers=bearer(user_token(customer)))
    assert r.json() == {"waitingRoomUrl": f"/session/{started['sessionId']}/waiting-room",
                        "sessionId": started["sessionId"]}


def test_a_customer_cannot_sign_another_customers_waiver(
    api: httpx.Client, customer: uuid.UUID, make_user: Callable[[], uuid.UUID], user_token: Token,
) -> None:
    intake_id = api.post("/api/intake/start", json={"plan": "standard"},
                         headers=bearer(user_token(customer))).json()["intakeId"]
    r = api.post(f"/api/intake/{intake_id}/waiver", headers=bearer(user_token(make_user())))
    assert (r.status_code, r.json()["code"]) == (404, "INTAKE_NOT_FOUND")


def test_completed_checkout_webhook_creates_the_paid_session(
    api: httpx.Client, db: Db, customer: uuid.UUID, counts: Counts, paid_checkout: Callable[..., dict[str, Any]],
) -> None:
    checkout = paid_checkout("standard", urgent=True)
    r = deliver(api, event("checkout.session.completed", checkout))

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "processed"
    session = db.execute(
        "select id, type, stripe_session_id, urgent, metadata from public.sessions where customer_user_id = %s",
        (customer,),
    ).fetchone()
    assert session is not None
    assert (session["type"], session["stripe_session_id"]) == ("video", checkout["id"])
    assert (session["metadata"]["amount_paid"], session["urgent"]) == (2999, True)
    assert str(session["id"]) == r.json()["sessionId"]
    assert counts(customer) == ONE_SESSION


def test_replayed_webhook_creates_one_session(
    api: httpx.Client, customer: uuid.UUID, counts: Counts, paid_checkout: Callable[..., dict[str, Any]],
) -> None:
    evt = event("checkout.session.completed", paid_checkout())
    first, replay = deliver(api, evt), deliver(api, evt)

    assert (first.status_code, replay.status_code) == (200, 200)
    assert replay.json() == {"received": True, "duplicate": True, "status": "processed"}
    assert counts(customer) == ONE_SESSION


def test_twenty_concurrent_deliveries_and_the_success_page_make_one_session(
    api: httpx.Client, db: Db, customer: uuid.UUID, user_token: Token, counts: Counts,
    paid_checkout: Callable[..., dict[str, Any]],
) -> None:
    checkout = paid_checkout()
    evt = event("checkout.session.completed", checkout)
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(lambda _: deliver(api, evt), range(20)))
    success = api.get("/api/checkout/success", params={"session_id": checkout["id"]}, headers=JSON)

    assert {r.status_code for r in replies} == {200}
    assert success.status_code == 200
    assert {r.json().get("sessionId") for r in replies if "sessionId" in r.json()} == {success.json()["sessionId"]}
    assert counts(customer) == ONE_SESSION
    assert db.execute("select status from public.stripe_events where id = %s", (evt["id"],)).fetchone() == {
        "status": "processed"}


def test_success_page_fulfils_before_the_webhook_arrives(
    api: httpx.Client, customer: uuid.UUID, user_token: Token, counts: Counts,
    paid_checkout: Callable[..., dict[str, Any]],
) -> None:
    checkout = paid_checkout()
    r = api.get("/api/checkout/success", params={"session_id": checkout["id"]}, headers=JSON)
    late = deliver(api, event("checkout.session.completed", checkout))

    assert r.status_code == 200
    assert r.json()["redirect"] == f"/session/{r.json()['sessionId']}/waiting-room"
    assert late.json()["sessionId"] == r.json()["sessionId"]
    assert counts(customer) == ONE_SESSION


def test_a_browser_back_from_stripe_gets_its_session_without_a_token(
    api: httpx.Client, customer: uuid.UUID, counts: Counts, paid_checkout: Callable[..., dict[str, Any]],
) -> None:
    checkout = paid_checkout()
    r = api.get("/api/checkout/success", params={"session_id": checkout["id"]}, headers={"Accept": "text/html"})
    late = deliver(api, event("checkout.session.completed", checkout))

    assert r.status_code == 303
    assert r.headers["location"] == f"http://shop.example/session/{late.json()['sessionId']}/waiting-room"
    assert late.json()["duplicate"] is False and counts(customer) == ONE_SESSION


def test_an_unknown_or_malformed_checkout_on_the_landing_page_is_a_4xx(api: httpx.Client) -> None:
    unknown = api.get("/api/checkout/success", params={"session_id": "cs_test_" + "x" * 30})
    garbage = api.get("/api/checkout/success", params={"session_id": "not-a-checkout"})

    assert (unknown.status_code, unknown.json()["code"]) == (404, "CHECKOUT_NOT_FOUND")
    assert (garbage.status_code, garbage.json()["code"]) == (422, "INVALID_REQUEST")


def test_unpaid_completion_waits_for_the_async_payment(
    api: httpx.Client, customer: uuid.UUID, counts: Counts, paid_checkout: Callable[..., dict[str, Any]],
) -> None:
    checkout = {**paid_checkout(), "payment_status": "unpaid"}
    waiting = deliver(api, event("checkout.session.completed", checkout))
    assert (waiting.status_code, waiting.json()["status"]) == (200, "ignored")
    assert counts(customer) == NOTHING

    paid = deliver(api, event("checkout.session.async_payment_succeeded", {**checkout, "payment_status": "paid"}))
    assert (paid.status_code, paid.json()["status"]) == (200, "processed")
    assert counts(customer) == ONE_SESSION


def test_a_declined_async_payment_is_recorded_as_handled_not_as_our_failure(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, customer: uuid.UUID, counts: Counts,
    paid_checkout: Callable[..., dict[str, Any]],
) -> None:
    checkout = paid_checkout(pay=False)
    stripe_stub.pay(checkout["id"], async_payment=True)
    assert deliver(api, event("checkout.session.completed", stripe_stub.sessions[checkout["id"]])).status_code == 200
    evt = event("checkout.session.async_payment_failed", stripe_stub.settle_async(checkout["id"], succeeded=False))
    r = deliver(api, evt)
    assert (r.status_code, r.json()["status"]) == (200, "processed")
    assert db.execute("select status, outcome from public.stripe_events where id = %s", (evt["id"],)).fetchone() == {
        "status": "processed", "outcome": {"checkout": "payment_failed", "changed": True, "status": "payment_failed",
                                           "payment_id": evt["data"]["object"]["metadata"]["payment_id"]}}
    assert counts(customer) == NOTHING


def test_paid_but_conflicted_checkout_is_refunded_once(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Token, counts: Counts,
    paid_checkout: Callable[..., dict[str, Any]],
) -> None:
    checkout = paid_checkout()
    free = api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(customer))).json()
    evt = event("checkout.session.completed", checkout)

    r, again = deliver(api, evt), deliver(api, evt)

    assert (r.status_code, r.json()["status"]) == (200, "refunded")
    assert again.json()["duplicate"] is True
    refunds = [c for c in stripe_stub.calls_to("POST", "/v1/refunds")
               if c.params.get("metadata[checkout_session_id]") == checkout["id"]]
    assert len(refunds) == 1
    assert refunds[0].idempotency_key == f"refund-{checkout['id']}"
    assert refunds[0].params["payment_intent"] == checkout["payment_intent"]
    row = db.execute("select status, outcome from public.stripe_events where id = %s", (evt["id"],)).fetchone()
    assert row is not None and row["status"] == "refunded"
    assert row["outcome"]["reason"] == "ACTIVE_SESSION_EXISTS"
    assert row["outcome"]["activeSessionId"] == free["sessionId"]
    request = db.execute("select status, stripe_object_id from public.stripe_outbox where id = %s",
                         (row["outcome"]["refund_request"],)).fetchone()
    assert request is not None and request["status"] == "sent" and request["stripe_object_id"].startswith("re_")
    assert counts(customer) == ONE_SESSION


@pytest.mark.parametrize(
    "tamper",
    [
        {"metadata": {"plan": "quick"}},
        {"metadata": {"intake_id": str(uuid.uuid4())}},
        {"metadata": {"customer_id": "not-a-uuid"}},
    ],
)
def test_tampered_checkout_is_recorded_as_failed_not_retried(
    api: httpx.Client, db: Db, stripe_stub: StripeStub, customer: uuid.UUID, counts: Counts,
    paid_checkout: Callable[..., dict[str, Any]], tamper: dict[str, Any],
) -> None:
    checkout = paid_checkout()
    metadata = {**checkout["metadata"], **tamper.get("metadata", {})}
    evt = event("checkout.session.completed", {**checkout, **tamper, "metadata": metadata})
    refunds_before = len(stripe_stub.calls_to("POST", "/v1/refunds"))

    r = deliver(api, evt)

    assert (r.status_code, r.json()["status"]) == (200, "failed")
    assert db.execute("select status from public.stripe_events where id = %s", (evt["id"],)).fetchone() == {
        "status": "failed"}
    assert counts(customer) == NOTHING
    assert len(stripe_stub.calls_to("POST", "/v1/refunds")) == refunds_before


@pytest.mark.parametrize("tamper", [{"amount_total": 100}, {"currency": "eur"}])
def test_a_paid_checkout_unlike_its_price_snapshot_is_refunded_in_full_not_used(
    api: httpx.Client, db: Db, customer: uuid.UUID, counts: Counts, stripe_settings: Settings,
    paid_checkout: Callable[..., dict[str, Any]], tamper: dict[str, Any],
) -> None:
    checkout = paid_checkout()

    r = deliver(api, event("checkout.session.completed", {**checkout, **tamper}))

    assert (r.status_code, r.json()["status"]) == (200, "refunded")
    assert counts(customer) == NOTHING
    run_outbox(stripe_settings)
    row = db.execute("select status, amount_paid, amount_refunded from public.payments where checkout_session_id = %s",
                     (checkout["id"],)).fetchone()
    assert row is not None and row["status"] == "refunded"  # what Stripe took, in full
    assert row["amount_refunded"] == row["amount_paid"] == {**checkout, **tamper}["amount_total"]


def test_unhandled_event_type_is_acknowledged_and_recorded_only(api: httpx.Client, db: Db) -> None:
    evt = event("plan.created", {"id": "price_123", "object": "plan"})
    before = db.execute("select count(*) as n from public.sessions").fetchone()
    r = deliver(api, evt)
    assert (r.status_code, r.json()["status"]) == (200, "ignored")
    assert db.execute("select status from public.stripe_events where id = %s", (evt["id"],)).fetchone() == {
        "status": "ignored"}
    assert db.execute("select count(*) as n from public.sessions").fetchone() == before


@pytest.mark.parametrize("problem", ["bad_signature", "stale_timestamp", "missing_header", "malformed_json"])
def test_unverifiable_webhook_is_400_and_writes_nothing(
    api: httpx.Client, db: Db, customer: uuid.UUID, counts: Counts, paid_checkout: Callable[..., dict[str, Any]],
    problem: str,
) -> None:
    payload = json.dumps(event("checkout.session.completed", paid_checkout())).encode()
    headers = {
        "bad_signature": {"Stripe-Signature": sign(payload, "whsec_someone_else")},
        "stale_timestamp": {"Stripe-Signature": sign(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 301)},
        "missing_header": {},
        "malformed_json": {"Stripe-Signature": sign(b"{oops", WEBHOOK_SECRET)},
    }[problem]
    before = stored_events(db)

    r = api.post("/api/stripe/webhook", content=b"{oops" if problem == "malformed_json" else payload, headers=headers)

    assert r.status_code == 400
    assert r.json()["code"] in {"BAD_SIGNATURE", "MISSING_SIGNATURE", "BAD_PAYLOAD"}
    assert stored_events(db) == before
    assert counts(customer) == NOTHING


# --- without Stripe, health, request ids -----------------------------------------------------

def test_without_stripe_keys_free_plans_work_and_paid_routes_say_stripe_is_not_configured(
    api_without_stripe: httpx.Client, customer: uuid.UUID, make_user: Callable[[], uuid.UUID], user_token: Token,
) -> None:
    free = api_without_stripe.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(customer)))
    payer = make_user()
    intake_id = api_without_stripe.post(
        "/api/intake/start", json={"plan": "quick"}, headers=bearer(user_token(payer))).json()["intakeId"]
    waiver = api_without_stripe.post(f"/api/intake/{intake_id}/waiver", headers=bearer(user_token(payer)))
    hook = api_without_stripe.post("/api/stripe/webhook", content=b"{}", headers={"Stripe-Signature": "t=1,v1=x"})

    assert free.status_code == 200
    assert (waiver.status_code, waiver.json()["code"]) == (503, "STRIPE_NOT_CONFIGURED")
    assert (hook.status_code, hook.json()["code"]) == (503, "STRIPE_NOT_CONFIGURED")
    assert waiver.json()["error"] == hook.json()["error"] == "Stripe is not configured: paid plans are unavailable"


def test_healthz_checks_postgrest_and_the_database(api: httpx.Client) -> None:
    r = api.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_every_response_carries_a_request_id(api: httpx.Client) -> None:
    assert api.get("/healthz", headers={"X-Request-ID": "abc123"}).headers["X-Request-ID"] == "abc123"
    assert len(api.get("/api/sessions/active").headers["X-Request-ID"]) == 32


def test_openapi_documents_the_routes(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/api/intake/start", "/api/intake/{intake_id}/waiver", "/api/stripe/webhook",
            "/api/checkout/success", "/api/sessions/active", "/healthz"} <= set(paths)


def test_signed_event_the_inbox_cannot_hold_is_400(api: httpx.Client, db: Db) -> None:
    before = stored_events(db)
    r = deliver(api, event("plan.created", {"id": "price_1", "object": "plan"}, id="not-an-event-id"))
    assert (r.status_code, r.json()["code"]) == (400, "BAD_PAYLOAD")
    assert stored_events(db) == before


def test_es256_tokens_are_verified_against_the_projects_jwks(
    stack: StackInfo, customer: uuid.UUID,
) -> None:
    signing, stranger = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(signing.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    claims = {"sub": str(customer), "role": "authenticated", "aud": "authenticated", "exp": int(time.time()) + 600}
    good = jwt.encode(claims, signing, algorithm="ES256", headers={"kid": "k1"})
    forged = jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": "k1"})
    settings = api_settings(stack, supabase_jwt_secret=None,
                            supabase_jwks_url=f"http://127.0.0.1:{server.server_address[1]}/jwks.json")
    try:
        with running_api(settings) as base, httpx.Client(base_url=base) as client:
            ok = client.post("/api/intake/start", json={"plan": "free"}, headers=bearer(good))
            refused = client.post("/api/intake/start", json={"plan": "free"}, headers=bearer(forged))
    finally:
        server.shutdown()
    assert ok.status_code == 200, ok.text
    assert (refused.status_code, refused.json()["code"]) == (401, "UNAUTHENTICATED")


def test_a_body_over_the_limit_is_413_before_it_is_parsed(
    api: httpx.Client, customer: uuid.UUID, user_token: Token, counts: Counts,
) -> None:
    huge = b'{"plan": "free", "concern": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    declared = api.post("/api/intake/start", content=huge,
                        headers={**bearer(user_token(customer)), "Content-Type": "application/json"})

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 65536):
            yield huge[start:start + 65536]

    streamed = api.post("/api/intake/start", content=chunks(),
                        headers={**bearer(user_token(customer)), "Content-Type": "application/json"})

    assert (declared.status_code, declared.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert streamed.status_code == 413
    assert counts(customer) == NOTHING


def test_healthz_answers_503_at_once_while_postgrest_is_down(stack: StackInfo) -> None:
    settings = api_settings(stack, supabase_rest_url=f"http://127.0.0.1:{free_port()}")
    with running_api(settings) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        began = time.monotonic()
        r = client.get("/healthz")
        head = client.head("/healthz")
        took = time.monotonic() - began

    assert (r.status_code, r.json()["code"], head.status_code) == (503, "BACKEND_UNAVAILABLE", 503)
    assert r.json() == {"error": "temporarily unavailable, try again", "code": "BACKEND_UNAVAILABLE",
                        "requestId": r.headers["X-Request-ID"]}
    assert took < 1.5


def test_a_jwks_that_cannot_be_fetched_is_our_outage_503_not_the_callers_401(
    stack: StackInfo, customer: uuid.UUID,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    claims = {"sub": str(customer), "role": "authenticated", "aud": "authenticated", "exp": int(time.time()) + 600}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})
    settings = api_settings(stack, supabase_jwt_secret=None,
                            supabase_jwks_url=f"http://127.0.0.1:{free_port()}/jwks.json")
    with running_api(settings) as base, httpx.Client(base_url=base) as client:
        r = client.post("/api/intake/start", json={"plan": "free"}, headers=bearer(token))
        unauthenticated = client.post("/api/intake/start", json={"plan": "free"})

    assert (r.status_code, r.json()["code"]) == (503, "AUTH_UNAVAILABLE")
    assert "Connection refused" not in r.text
    assert unauthenticated.headers["www-authenticate"] == "Bearer"


def test_healthz_answers_503_within_a_second_and_a_half_while_postgrest_hangs(stack: StackInfo) -> None:
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # accepts connections, never answers
    settings = api_settings(stack, supabase_rest_url=f"http://127.0.0.1:{hung.getsockname()[1]}")
    try:
        with running_api(settings) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
            began = time.monotonic()
            r = client.get("/healthz")
            took = time.monotonic() - began
    finally:
        hung.close()

    assert (r.status_code, r.json()["code"]) == (503, "BACKEND_UNAVAILABLE")
    assert took < 1.5
