"""One status per error code, the same from SQL and from Python: every code the SQL functions can
raise is raised through the real RPC and arrives as its class, with its class's status."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from pysvc.errors import SQL_ERRORS, ApiError
from pysvc.local.stack import StackInfo
from pysvc.postgrest import Rpc, connect
from tests.utils.payments import open_payment

Db = psycopg.Connection[dict[str, Any]]
Payload = dict[str, Any]
Call = Callable[[str, Payload], Any]
RAISES = re.compile(r"raise_api_error\(\s*(\d{3})\s*,\s*'([A-Z_]+)'")


def free(customer: uuid.UUID, intake_id: uuid.UUID, **extra: Any) -> Payload:
    return {"customer_id": str(customer), "plan": "free", "intake_id": str(intake_id), "payment_method": "free",
            **extra}


def paid(customer: uuid.UUID, intake: uuid.UUID, checkout: str, **extra: Any) -> Payload:
    return {"customer_id": str(customer), "plan": "standard", "intake_id": str(intake), "payment_method": "stripe",
            "stripe_session_id": checkout, "amount_paid": 2999, "currency": "usd", **extra}


@pytest.fixture(scope="module")
def call(stack: StackInfo) -> Iterator[Call]:
    """Call an RPC the way the service does (pysvc.postgrest.Rpc over real HTTP)."""
    loop = asyncio.new_event_loop()
    rpc = Rpc(connect(stack.rest_url, stack.service_role_key))

    def _call(function: str, args: Payload) -> Any:
        return loop.run_until_complete(rpc.call(function, args))

    yield _call
    loop.run_until_complete(rpc.aclose())
    loop.close()


def test_every_code_the_sql_raises_has_one_status_and_a_class_with_it(db: Db) -> None:
    bodies = db.execute(
        "select p.prosrc from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname in ('public', 'private') and p.prosrc like '%raise_api_error%'",
    ).fetchall()
    raised: dict[str, set[int]] = {}
    for row in bodies:
        for status, code in RAISES.findall(row["prosrc"]):
            raised.setdefault(code, set()).add(int(status))

    assert raised, "no SQL function raises API errors?"
    assert {code: statuses for code, statuses in raised.items() if len(statuses) > 1} == {}
    assert {code: next(iter(s)) for code, s in raised.items()} == {
        code: SQL_ERRORS[code].status if code in SQL_ERRORS else "no class" for code in raised
    }


def _intake(db: Db, customer: uuid.UUID, plan: str = "free", *, signed: bool = True) -> uuid.UUID:
    row = db.execute(
        "insert into public.intakes (customer_user_id, plan, waiver_signed_at)"
        " values (%s, %s, case when %s then now() end) returning id", (customer, plan, signed),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row["id"]))


def _ended_session(db: Db, call: Call, customer: uuid.UUID) -> uuid.UUID:
    intake = _intake(db, customer)
    created = call("create_session_record", free(customer, intake))
    db.execute("update public.sessions set status = 'completed' where id = %s", (created["session_id"],))
    return intake


def _session_conflict(db: Db, call: Call, customer: uuid.UUID) -> None:
    """A writer that skips the advisory lock takes the intake first: only the unique index stops us."""
    intake = _intake(db, customer)
    with psycopg.connect(db.info.dsn, password=db.info.password) as other:
        other.execute(
            "insert into public.sessions (customer_user_id, type, status, plan, intake_id)"
            " values (%s, 'chat', 'completed', 'free', %s)", (customer, intake),
        )
        outcome: list[BaseException] = []

        def racing_call() -> None:
            try:
                call("create_session_record", free(customer, intake))
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=racing_call)
        caller.start()
        time.sleep(0.5)  # the RPC passed its checks and waits on the index
        other.commit()
        caller.join(10)
    raise outcome[0]


def _mechanic(db: Db, *, active: bool = True) -> str:
    """A new user who is a (non-specialist) mechanic."""
    user = uuid.uuid4()
    db.execute("insert into auth.users (id, email) values (%s, %s)", (user, f"{user.hex[:12]}@example.com"))
    db.execute(
        "insert into public.mechanics (user_id, display_name, active, is_specialist) values (%s, %s, %s, false)",
        (user, "Mechanic " + user.hex[:6], active),
    )
    return str(user)


@dataclass(frozen=True)
class Offer:
    session: str
    assignment: str


def _offer(db: Db, call: Call, customer: uuid.UUID, **extra: Any) -> Offer:
    """A pending free session of this customer and its queued assignment."""
    session = call("create_session_record", free(customer, _intake(db, customer), **extra))["session_id"]
    row = db.execute(
        "select id from public.session_assignments where session_id = %s and status = 'queued'", (session,),
    ).fetchone()
    assert row is not None
    return Offer(str(session), str(row["id"]))


def _take(db: Db, call: Call, assignment: str) -> str:
    """A new mechanic accepts the assignment."""
    mechanic = _mechanic(db)
    call("accept_assignment", {"assignment_id": assignment, "mechanic_id": mechanic})
    return mechanic


def _accepted(db: Db, call: Call, customer: uuid.UUID, *steps: str) -> Offer:
    """A session a mechanic accepted, then moved by that mechanic with each of steps (start_session, ...)."""
    offer = _offer(db, call, customer)
    mechanic = _take(db, call, offer.assignment)
    for step in steps:
        call(step, {"session_id": offer.session, "mechanic_id": mechanic})
    return offer


def _unsigned_start(db: Db, call: Call, customer: uuid.UUID) -> None:
    """The assigned mechanic starts a session whose customer has not signed the waiver."""
    session = call("create_session_record", free(customer, _intake(db, customer, signed=False)))["session_id"]
    row = db.execute("select id from public.session_assignments where session_id = %s", (session,)).fetchone()
    assert row is not None
    mechanic = _take(db, call, str(row["id"]))
    call("start_session", {"session_id": session, "mechanic_id": mechanic})


def _decline(db: Db, call: Call, customer: uuid.UUID, *, by_preferred: bool, times: int = 1) -> None:
    preferred = _mechanic(db)
    offer = _offer(db, call, customer, routing_type="priority_broadcast", preferred_mechanic_id=preferred)
    for _ in range(times):
        call("decline_assignment", {"assignment_id": offer.assignment,
                                    "mechanic_id": preferred if by_preferred else _mechanic(db)})


def _processing_then_waiver(db: Db, call: Call, customer: uuid.UUID) -> None:
    """A Checkout completed with a bank method (not cleared yet), then the waiver signed again."""
    intake = _intake(db, customer, "standard")
    call("record_checkout_status", {"checkout_session_id": open_payment(db, customer, intake), "status": "processing"})
    call("open_checkout", {"customer_id": str(customer), "intake_id": str(intake), "success_url": "https://a/s",
                           "cancel_url": "https://a/c"})


def _refund_a_used_payment(db: Db, call: Call, customer: uuid.UUID) -> None:
    """An operator's refund of a payment whose session is pending: cancel the session instead."""
    intake = _intake(db, customer, "standard")
    checkout = open_payment(db, customer, intake)
    call("create_session_record", paid(customer, intake, checkout, payment_intent=f"pi_{customer.hex}"))
    call("enqueue_stripe_request", {"kind": "refund", "checkout_session_id": checkout})


def _cases() -> dict[str, Callable[[Db, Call, uuid.UUID], Any]]:
    new = uuid.uuid4
    return {
        "MISSING_FIELD": lambda db, call, c: call("create_session_record", free(c, new(), payment_method=None)),
        "INVALID_PAYMENT_METHOD": lambda db, call, c: call(
            "create_session_record", free(c, new(), payment_method="cash")),
        "INVALID_ROUTING_TYPE": lambda db, call, c: call(
            "create_session_record", free(c, new(), routing_type="teleport")),
        "INVALID_TYPE": lambda db, call, c: call("create_session_record", free(c, new(), type="hologram")),
        "INVALID_EMAIL": lambda db, call, c: call("create_session_record", free(c, new(), customer_email="x")),
        "UNKNOWN_PLAN": lambda db, call, c: call("create_session_record", free(c, new(), plan="platinum")),
        "TYPE_PLAN_MISMATCH": lambda db, call, c: call("create_session_record", free(c, new(), type="video")),
        "PAYMENT_METHOD_MISMATCH": lambda db, call, c: call(
            "create_session_record", free(c, new(), payment_method="stripe")),
        "INVALID_STRIPE_SESSION": lambda db, call, c: call(
            "create_session_record", paid(c, new(), "not-a-checkout")),
        "AMOUNT_MISMATCH": lambda db, call, c: call("create_session_record", free(c, new(), amount_paid=500)),
        "INTAKE_NOT_FOUND": lambda db, call, c: call("create_session_record", free(c, new())),
        "INTAKE_PLAN_MISMATCH": lambda db, call, c: call(
            "create_session_record", free(c, _intake(db, c), plan="trial")),
        "MECHANIC_NOT_FOUND": lambda db, call, c: call(
            "create_session_record", free(c, _intake(db, c), preferred_mechanic_id=str(new()))),
        "ACTIVE_SESSION_EXISTS": lambda db, call, c: [
            call("create_session_record", free(c, _intake(db, c))) for _ in range(2)],
        "INTAKE_ALREADY_USED": lambda db, call, c: call("create_session_record", free(c, _ended_session(db, call, c))),
        "STRIPE_SESSION_MISMATCH": lambda db, call, c: call("create_session_record", paid(
            c, _intake(db, c, "standard"), open_payment(db, c, _intake(db, c, "standard")))),
        "PAYMENT_NOT_FOUND": lambda db, call, c: call(
            "create_session_record", paid(c, _intake(db, c, "standard"), "cs_test_" + c.hex)),
        "PAYMENT_PROCESSING": _processing_then_waiver,
        "PAYMENT_IN_USE": _refund_a_used_payment,
        "NOTHING_TO_SEND": lambda db, call, c: call("enqueue_stripe_request", {
            "kind": "refund", "checkout_session_id": open_payment(db, c, _intake(db, c, "standard"))}),
        "INVALID_REFUND": lambda db, call, c: call("record_charge_refund", {
            "refund_id": "ch_123", "payment_intent": "pi_123", "amount": 1, "status": "succeeded"}),
        "INSUFFICIENT_CREDITS": lambda db, call, c: call("create_session_record", {
            **free(c, _intake(db, c, "quick"), plan="quick"), "payment_method": "credits"}),
        "UNKNOWN_USER": lambda db, call, c: call("create_session_record", free(new(), new(), intake={})),
        "INVALID_INTAKE": lambda db, call, c: call("create_session_record", free(c, new(), intake={"vehicle_year": 1})),
        "SESSION_CONFLICT": _session_conflict,
        # the session lifecycle
        "NOT_A_MECHANIC": lambda db, call, c: call("mechanic_queue_for", {"mechanic_id": str(c)}),
        "MECHANIC_INACTIVE": lambda db, call, c: call(
            "mechanic_queue_for", {"mechanic_id": _mechanic(db, active=False)}),
        "NOT_ELIGIBLE": lambda db, call, c: _take(db, call, _offer(
            db, call, c, routing_type="workshop_only", preferred_mechanic_id=_mechanic(db)).assignment),
        "ASSIGNMENT_NOT_FOUND": lambda db, call, c: _take(db, call, str(new())),
        "ASSIGNMENT_TAKEN": lambda db, call, c: _take(db, call, _accepted(db, call, c).assignment),
        "ASSIGNMENT_CLOSED": lambda db, call, c: _take(db, call, _accepted(db, call, c, "release_session").assignment),
        "NOT_ASSIGNED_MECHANIC": lambda db, call, c: call(
            "start_session", {"session_id": _offer(db, call, c).session, "mechanic_id": _mechanic(db)}),
        "INVALID_TRANSITION": lambda db, call, c: _accepted(db, call, c, "complete_session"),
        "SESSION_NOT_FOUND": lambda db, call, c: call(
            "cancel_session", {"session_id": str(new()), "customer_id": str(c)}),
        "SESSION_NOT_CANCELLABLE": lambda db, call, c: call(
            "cancel_session", {"session_id": _accepted(db, call, c, "start_session").session, "customer_id": str(c)}),
        "WAIVER_NOT_SIGNED": _unsigned_start,
        "ASSIGNMENT_ALREADY_DECLINED": lambda db, call, c: _decline(db, call, c, by_preferred=True, times=2),
        "NOT_PREFERRED_MECHANIC": lambda db, call, c: _decline(db, call, c, by_preferred=False),
        # the Stripe outbox
        "INVALID_ARGUMENT": lambda db, call, c: call("claim_stripe_requests", {"max_requests": 0}),
        "INVALID_KIND": lambda db, call, c: call(
            "enqueue_stripe_request", {"kind": "chargeback", "checkout_session_id": "cs_test_" + c.hex}),
        "INVALID_OUTCOME": lambda db, call, c: call("finish_stripe_request", {"id": 0, "outcome": "maybe"}),
        "REQUEST_NOT_FOUND": lambda db, call, c: call("finish_stripe_request", {"id": 0, "outcome": "failed"}),
    }


CASES = _cases()


@pytest.mark.parametrize("code", sorted(CASES))
def test_sql_error_reaches_python_as_its_class_with_its_status(
    code: str, db: Db, call: Call, make_user: Callable[[], uuid.UUID],
) -> None:
    with pytest.raises(ApiError) as raised:
        CASES[code](db, call, make_user())

    assert type(raised.value) is SQL_ERRORS[code]
    assert (raised.value.http_status, raised.value.body()["code"]) == (SQL_ERRORS[code].status, code)


def test_every_sql_error_class_is_raised_by_a_case_above() -> None:
    assert set(SQL_ERRORS) - set(CASES) == set()
