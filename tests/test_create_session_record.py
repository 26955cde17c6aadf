"""public.create_session_record through real PostgREST HTTP: writes, conflicts, idempotency, errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from tests.utils.payments import open_payment, payment

Rpc = Callable[..., httpx.Response]
Counts = Callable[[uuid.UUID], dict[str, int]]
MakeIntake = Callable[..., uuid.UUID]
Db = psycopg.Connection[dict[str, Any]]

NOTHING = {"sessions": 0, "participants": 0, "assignments": 0, "events": 0, "debits": 0}
ONE_SESSION = {"sessions": 1, "participants": 1, "assignments": 1, "events": 1, "debits": 0}


def free_payload(customer: uuid.UUID, intake: uuid.UUID, **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": str(customer), "plan": "free", "intake_id": str(intake),
        "payment_method": "free", **extra,
    }


def stripe_payload(db: Db, customer: uuid.UUID, intake: uuid.UUID, **extra: Any) -> dict[str, Any]:
    """What the webhook sends for a paid Checkout of the intake (opened as the waiver opens it)."""
    return {
        "customer_id": str(customer), "plan": "standard", "intake_id": str(intake),
        "payment_method": "stripe", "stripe_session_id": open_payment(db, customer, intake),
        "amount_paid": 2999, "currency": "usd", **extra,
    }


def grant_credits(db: Db, customer: uuid.UUID, amount: int) -> None:
    db.execute(
        "insert into public.credit_entries (customer_user_id, delta, reason) values (%s, %s, 'grant')",
        (customer, amount),
    )


def test_free_session_writes_session_participant_assignment_and_event(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
) -> None:
    intake = make_intake(customer, "free", urgent=True)
    r = rpc(free_payload(customer, intake, urgent=True, routing_type="hybrid"))

    assert r.status_code == 200, r.text
    body = r.json()
    session_id = body["session_id"]
    assert body == {
        "session_id": session_id,
        "session_type": "chat",
        "status": "pending",
        "created": True,
    }
    assert counts(customer) == ONE_SESSION
    session = db.execute("select * from public.sessions where id = %s", (session_id,)).fetchone()
    assert session is not None
    assert (session["type"], session["status"], session["plan"], session["intake_id"]) == (
        "chat", "pending", "free", intake,
    )
    assert (session["stripe_session_id"], session["payment_method"]) == (None, "free")
    assert session["metadata"] == {"amount_paid": None, "source": "intake"}
    assert {k: session[k] for k in ("urgent", "is_specialist", "preferred_mechanic_id", "routing_type")} == {
        "urgent": True, "is_specialist": False, "preferred_mechanic_id": None, "routing_type": "hybrid",
    }
    participant = db.execute(
        "select role from public.session_participants where session_id = %s and user_id = %s",
        (session_id, customer),
    ).fetchone()
    assert participant == {"role": "customer"}
    assignment = db.execute(
        "select status, offered_at is not null as offered, urgent, routing_type, preferred_mechanic_id, metadata"
        " from public.session_assignments where session_id = %s",
        (session_id,),
    ).fetchone()
    assert assignment == {"status": "queued", "offered": True, "urgent": True, "routing_type": "hybrid",
                          "preferred_mechanic_id": None, "metadata": {}}
    event = db.execute(
        "select event_type, user_id, metadata from public.session_events where session_id = %s",
        (session_id,),
    ).fetchone()
    assert event == {
        "event_type": "created",
        "user_id": customer,
        "metadata": {
            "type": "chat", "plan": "free", "payment_method": "free", "amount_paid": None,
            "urgent": True, "source": "intake",
        },
    }


def test_paid_session_records_the_stripe_checkout_and_amount(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
) -> None:
    intake = make_intake(customer, "standard")
    payload = stripe_payload(db, customer, intake, currency="USD")
    r = rpc(payload)

    assert r.status_code == 200, r.text
    assert r.json()["session_type"] == "video"
    session = db.execute(
        "select stripe_session_id, metadata from public.sessions where id = %s", (r.json()["session_id"],),
    ).fetchone()
    assert session is not None
    assert session["stripe_session_id"] == payload["stripe_session_id"]
    assert session["metadata"]["amount_paid"] == 2999
    assert payment(db, payload["stripe_session_id"])["status"] == "consumed"
    assert counts(customer) == ONE_SESSION


def test_credits_session_debits_the_plan_cost(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
) -> None:
    grant_credits(db, customer, 5)
    intake = make_intake(customer, "standard")
    r = rpc({"customer_id": str(customer), "plan": "standard", "intake_id": str(intake),
             "payment_method": "credits"})

    assert r.status_code == 200, r.text
    assert counts(customer) == {**ONE_SESSION, "debits": 1}
    balance = db.execute(
        "select balance from public.credit_balances where customer_user_id = %s", (customer,),
    ).fetchone()
    assert balance == {"balance": 2}


def test_insufficient_credits_is_402_and_writes_nothing(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
) -> None:
    grant_credits(db, customer, 2)
    intake = make_intake(customer, "standard")
    r = rpc({"customer_id": str(customer), "plan": "standard", "intake_id": str(intake),
             "payment_method": "credits"})

    assert r.status_code == 402
    assert r.json()["code"] == "INSUFFICIENT_CREDITS"
    assert json.loads(r.json()["details"]) == {"required": 3, "balance": 2}
    assert counts(customer) == NOTHING


def test_second_session_is_409_naming_the_active_one(
    rpc: Rpc, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
) -> None:
    first = rpc(free_payload(customer, make_intake(customer))).json()
    r = rpc(free_payload(customer, make_intake(customer)))

    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "ACTIVE_SESSION_EXISTS"
    assert body["message"] == "You already have an active session"
    assert json.loads(body["details"]) == {
        "activeSessionId": first["session_id"],
        "activeSessionType": "chat",
        "activeSessionStatus": "pending",
    }
    assert counts(customer) == ONE_SESSION


def test_a_finished_session_does_not_block_the_next(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake,
) -> None:
    first = rpc(free_payload(customer, make_intake(customer))).json()
    db.execute("update public.sessions set status = 'completed' where id = %s", (first["session_id"],))
    assert rpc(free_payload(customer, make_intake(customer))).status_code == 200


def test_replayed_stripe_checkout_returns_the_same_session_without_writing(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
) -> None:
    payload = stripe_payload(db, customer, make_intake(customer, "standard"))
    first = rpc(payload).json()
    again = rpc(payload)

    assert again.status_code == 200
    assert again.json() == {**first, "created": False}
    assert counts(customer) == ONE_SESSION


def test_fifty_concurrent_calls_for_one_customer_create_exactly_one(
    rpc: Rpc, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
) -> None:
    intakes = [make_intake(customer) for _ in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(lambda i: rpc(free_payload(customer, i)), intakes))

    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] + [409] * 49
    assert {r.json()["code"] for r in replies if r.status_code == 409} == {"ACTIVE_SESSION_EXISTS"}
    assert counts(customer) == ONE_SESSION


def test_thirty_concurrent_deliveries_of_one_checkout_give_one_session(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
) -> None:
    payload = stripe_payload(db, customer, make_intake(customer, "standard"))
    with ThreadPoolExecutor(max_workers=30) as pool:
        replies = list(pool.map(lambda _: rpc(payload), range(30)))

    assert {r.status_code for r in replies} == {200}
    assert len({r.json()["session_id"] for r in replies}) == 1
    assert sum(r.json()["created"] for r in replies) == 1
    assert counts(customer) == ONE_SESSION


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"plan": "platinum"}, 404, "UNKNOWN_PLAN"),
        ({"type": "video"}, 422, "TYPE_PLAN_MISMATCH"),
        ({"type": "hologram"}, 422, "INVALID_TYPE"),
        ({"payment_method": "stripe"}, 422, "PAYMENT_METHOD_MISMATCH"),
        ({"payment_method": "cash"}, 422, "INVALID_PAYMENT_METHOD"),
        ({"stripe_session_id": "cs_test_abc"}, 422, "PAYMENT_METHOD_MISMATCH"),
        ({"amount_paid": 500}, 422, "AMOUNT_MISMATCH"),
        ({"intake_id": str(uuid.uuid4())}, 404, "INTAKE_NOT_FOUND"),
        ({"preferred_mechanic_id": str(uuid.uuid4())}, 404, "MECHANIC_NOT_FOUND"),
        ({"routing_type": "teleport"}, 422, "INVALID_ROUTING_TYPE"),
        ({"customer_email": "not-an-email"}, 422, "INVALID_EMAIL"),
        ({"plan": "x" * 10_000_000}, 404, "UNKNOWN_PLAN"),
        ({"customer_id": "not-a-uuid"}, 400, "22P02"),
        ({"amount_paid": -1}, 422, "AMOUNT_MISMATCH"),
        ({"amount_paid": 10**12}, 400, "22003"),
        ({"urgent": "very"}, 400, "22P02"),
        ({"surprise": 1}, 404, "PGRST202"),
    ],
)
def test_invalid_free_request_is_refused_and_writes_nothing(
    rpc: Rpc, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
    change: dict[str, Any], status: int, code: str,
) -> None:
    r = rpc({**free_payload(customer, make_intake(customer)), **change})

    assert (r.status_code, r.json()["code"]) == (status, code)
    assert counts(customer) == NOTHING


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount_paid": None}, "AMOUNT_MISMATCH"),
        ({"stripe_session_id": None}, "INVALID_STRIPE_SESSION"),
        ({"stripe_session_id": "pi_123"}, "INVALID_STRIPE_SESSION"),
        ({"payment_method": "free"}, "PAYMENT_METHOD_MISMATCH"),
        ({"plan": "quick", "type": "video"}, "TYPE_PLAN_MISMATCH"),
    ],
)
def test_invalid_paid_request_is_422_and_writes_nothing(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
    change: dict[str, Any], code: str,
) -> None:
    payload = {**stripe_payload(db, customer, make_intake(customer, "standard")), **change}
    r = rpc({k: v for k, v in payload.items() if v is not None})

    assert (r.status_code, r.json()["code"]) == (422, code)
    assert counts(customer) == NOTHING


@pytest.mark.parametrize("change", [{"amount_paid": 100}, {"currency": "eur"}])
def test_a_paid_checkout_that_does_not_match_its_price_snapshot_is_refunded_not_used(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts, change: dict[str, Any],
) -> None:
    payload = {**stripe_payload(db, customer, make_intake(customer, "standard")), **change}
    r = rpc(payload)

    assert r.status_code == 200, r.text
    assert (r.json()["session_id"], r.json()["refunded"], r.json()["reason"]) == (None, True, "AMOUNT_MISMATCH")
    assert payment(db, payload["stripe_session_id"])["status"] == "refund_requested"
    assert counts(customer) == NOTHING


def test_a_checkout_this_service_never_opened_is_not_found(
    rpc: Rpc, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
) -> None:
    r = rpc({"customer_id": str(customer), "plan": "standard", "intake_id": str(make_intake(customer, "standard")),
             "payment_method": "stripe", "stripe_session_id": f"cs_test_{uuid.uuid4().hex}",
             "amount_paid": 2999, "currency": "usd"})

    assert (r.status_code, r.json()["code"]) == (404, "PAYMENT_NOT_FOUND")
    assert counts(customer) == NOTHING


def test_missing_required_key_is_a_4xx(rpc: Rpc, customer: uuid.UUID, make_intake: MakeIntake) -> None:
    payload = free_payload(customer, make_intake(customer))
    del payload["intake_id"]
    r = rpc(payload)
    assert 400 <= r.status_code < 500


def test_another_customers_intake_is_not_found(
    rpc: Rpc, customer: uuid.UUID, make_user: Callable[[], uuid.UUID], make_intake: MakeIntake,
    counts: Counts,
) -> None:
    someone_else = make_user()
    r = rpc(free_payload(customer, make_intake(someone_else)))

    assert (r.status_code, r.json()["code"]) == (404, "INTAKE_NOT_FOUND")
    assert counts(customer) == NOTHING
    assert counts(someone_else) == NOTHING


def test_an_inactive_mechanic_cannot_be_preferred(
    rpc: Rpc, customer: uuid.UUID, make_intake: MakeIntake, make_mechanic: Callable[..., uuid.UUID],
) -> None:
    retired = make_mechanic(active=False)
    r = rpc(free_payload(customer, make_intake(customer), preferred_mechanic_id=str(retired)))
    assert (r.status_code, r.json()["code"]) == (404, "MECHANIC_NOT_FOUND")


def test_preferred_mechanic_is_a_column_of_the_session_and_its_offer(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake,
    make_mechanic: Callable[..., uuid.UUID],
) -> None:
    mechanic = make_mechanic()
    r = rpc(free_payload(customer, make_intake(customer), preferred_mechanic_id=str(mechanic),
                         routing_type="workshop_only"))
    row = db.execute(
        "select s.preferred_mechanic_id as asked, s.routing_type, a.preferred_mechanic_id as offered_to,"
        " a.routing_type as offer_routing, a.metadata from public.session_assignments a"
        " join public.sessions s on s.id = a.session_id where a.session_id = %s", (r.json()["session_id"],),
    ).fetchone()
    assert row == {"asked": mechanic, "routing_type": "workshop_only", "offered_to": mechanic,
                   "offer_routing": "workshop_only", "metadata": {}}


def test_an_intake_gives_at_most_one_session(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake,
) -> None:
    intake = make_intake(customer)
    first = rpc(free_payload(customer, intake)).json()
    db.execute("update public.sessions set status = 'completed' where id = %s", (first["session_id"],))
    r = rpc(free_payload(customer, intake))
    assert (r.status_code, r.json()["code"]) == (409, "INTAKE_ALREADY_USED")


def test_failure_in_the_last_insert_leaves_no_row_behind(
    rpc: Rpc, db: Db, customer: uuid.UUID, make_intake: MakeIntake, counts: Counts,
) -> None:
    db.execute(
        """
        create function public.fail_created_event() returns trigger language plpgsql
        set search_path = '' as $$ begin raise exception 'injected failure'; end $$;
        create trigger fail_created_event before insert on public.session_events
        for each row execute function public.fail_created_event();
        """
    )
    try:
        r = rpc(free_payload(customer, make_intake(customer)))
    finally:
        db.execute(
            "drop trigger fail_created_event on public.session_events;"
            " drop function public.fail_created_event()"
        )
    assert r.status_code >= 400
    assert "injected failure" in r.json()["message"]
    assert counts(customer) == NOTHING


def test_the_unique_index_refuses_a_second_active_session_even_without_the_function(
    db: Db, customer: uuid.UUID, make_intake: MakeIntake,
) -> None:
    insert = (
        "insert into public.sessions (customer_user_id, type, plan, intake_id)"
        " values (%s, 'chat', 'free', %s)"
    )
    db.execute(insert, (customer, make_intake(customer)))
    with pytest.raises(psycopg.errors.UniqueViolation, match="sessions_one_active_per_customer"):
        db.execute(insert, (customer, make_intake(customer)))


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_api_roles_cannot_call_the_function(
    rpc: Rpc, db: Db, mint: Callable[..., str], customer: uuid.UUID, make_intake: MakeIntake,
    counts: Counts,
    role: str,
) -> None:
    token = mint(role, sub=str(customer), aud="authenticated")
    payload = stripe_payload(db, customer, make_intake(customer, "standard"))
    r = rpc(payload, token=token)

    assert r.status_code == {"anon": 401, "authenticated": 403}[role]
    assert r.json()["code"] == "42501"
    assert counts(customer) == NOTHING
