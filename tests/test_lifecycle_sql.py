"""The life of a session in SQL, through real PostgREST /rpc calls: accept, start, complete,
release, cancel, expire, the Stripe outbox, and the guarantees under concurrency."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import psycopg
import pytest

from pysvc.local.stack import StackInfo
from tests.utils.lifecycle import (
    Db,
    assert_invariants,
    call_rpc,
    details,
    event_types,
    pg_cron_command,
    refusal,
)
from tests.utils.payments import open_payment, payment

MakeUser = Callable[[], uuid.UUID]
MakeMechanic = Callable[..., uuid.UUID]

LIFECYCLE_FUNCTIONS: dict[str, dict[str, Any]] = {
    "accept_assignment": {"assignment_id": str(uuid.uuid4()), "mechanic_id": str(uuid.uuid4())},
    "mechanic_queue_for": {"mechanic_id": str(uuid.uuid4())},
    "start_session": {"session_id": str(uuid.uuid4()), "mechanic_id": str(uuid.uuid4())},
    "complete_session": {"session_id": str(uuid.uuid4()), "mechanic_id": str(uuid.uuid4())},
    "release_session": {"session_id": str(uuid.uuid4()), "mechanic_id": str(uuid.uuid4())},
    "cancel_session": {"session_id": str(uuid.uuid4()), "customer_id": str(uuid.uuid4())},
    "expire_sessions": {"max_sessions": 1},
    "decline_assignment": {"assignment_id": str(uuid.uuid4()), "mechanic_id": str(uuid.uuid4())},
    "set_session_limits": {"no_show_minutes": 10},
    "get_session_limits": {},
    "enqueue_stripe_request": {"kind": "refund", "checkout_session_id": "cs_test_nobody"},
    "claim_stripe_requests": {"max_requests": 1, "lease": "1 second"},
    "finish_stripe_request": {"id": 0, "outcome": "sent"},
}


class Call(Protocol):
    def __call__(self, function: str, *, token: str | None = None, **args: Any) -> httpx.Response: ...


@dataclass(frozen=True)
class Session:
    id: str
    customer: uuid.UUID
    checkout: str | None = None


class NewSession(Protocol):
    def __call__(self, customer: uuid.UUID | None = None, *, paid_with: str = "free", waiver: bool = True,
                 **extra: Any) -> Session: ...


@pytest.fixture
def call(rest: httpx.Client, service_key: str) -> Call:
    def _call(function: str, *, token: str | None = None, **args: Any) -> httpx.Response:
        return call_rpc(rest, token or service_key, function, **args)

    return _call


@pytest.fixture
def new_session(call: Call, db: Db, make_user: MakeUser, make_intake: Callable[..., uuid.UUID]) -> NewSession:
    """A pending session made by create_session_record: free, Stripe-paid or paid with credits."""

    def _new(customer: uuid.UUID | None = None, *, paid_with: str = "free", waiver: bool = True,
             **extra: Any) -> Session:
        customer = customer or make_user()
        plan = {"free": "free", "stripe": "standard", "credits": "quick"}[paid_with]
        signed = {"waiver_signed_at": datetime.now(UTC)} if waiver else {}
        payload: dict[str, Any] = {
            "customer_id": customer, "plan": plan, "intake_id": make_intake(customer, plan, **signed),
            "payment_method": paid_with, **extra,
        }
        checkout = None
        if paid_with == "stripe":
            checkout = open_payment(db, customer, payload["intake_id"])
            payload.update(stripe_session_id=checkout, amount_paid=2999, currency="usd",
                           payment_intent=f"pi_{customer.hex}")
        if paid_with == "credits":
            db.execute(
                "insert into public.credit_entries (customer_user_id, delta, reason) values (%s, 1, 'grant')",
                (customer,),
            )
        r = call("create_session_record", **payload)
        assert r.status_code == 200, r.text
        return Session(r.json()["session_id"], customer, checkout)

    return _new


def assignment_of(db: Db, session_id: str, status: str = "queued") -> str:
    row = db.execute(
        "select id from public.session_assignments where session_id = %s and status = %s", (session_id, status),
    ).fetchone()
    assert row is not None, f"no {status} assignment"
    return str(row["id"])


def status_of(db: Db, session_id: str) -> str:
    row = db.execute("select status from public.sessions where id = %s", (session_id,)).fetchone()
    assert row is not None
    return str(row["status"])


def make_old(db: Db, session_id: str, minutes: int) -> None:
    db.execute(
        "update public.session_assignments set offered_at = now() - make_interval(mins => %s)"
        " where session_id = %s and status = 'queued'",
        (minutes, session_id),
    )


@pytest.fixture
def accepted(call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic) -> Callable[..., Session]:
    """A session a mechanic has accepted (waiting), and that mechanic."""

    def _accepted(mechanic: uuid.UUID, **kwargs: Any) -> Session:
        session = new_session(**kwargs)
        r = accept(call, db, session, mechanic)
        assert r.status_code == 200, r.text
        return session

    return _accepted


def accept(call: Call, db: Db, session: Session, mechanic: uuid.UUID) -> httpx.Response:
    return call("accept_assignment", assignment_id=assignment_of(db, session.id), mechanic_id=mechanic)


# Users who are not active mechanics, and the 403 code each gets.
NOT_ACTIVE_MECHANICS = [("inactive", "MECHANIC_INACTIVE"), ("customer", "NOT_A_MECHANIC")]


def not_active_mechanic(who: str, make_mechanic: MakeMechanic, make_user: MakeUser) -> uuid.UUID:
    return make_mechanic(active=False) if who == "inactive" else make_user()


def outbox_rows(db: Db, session_id: str) -> list[dict[str, Any]]:
    return db.execute("select * from public.stripe_outbox where session_id = %s", (session_id,)).fetchall()


def balance(db: Db, customer: uuid.UUID) -> int:
    row = db.execute(
        "select coalesce(sum(delta), 0) as b from public.credit_entries where customer_user_id = %s", (customer,),
    ).fetchone()
    assert row is not None
    return int(row["b"])


# Accept


def test_a_mechanic_accepting_a_queued_session_holds_it(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic,
) -> None:
    session, mechanic = new_session(), make_mechanic()
    assignment = assignment_of(db, session.id)

    r = call("accept_assignment", assignment_id=assignment, mechanic_id=mechanic)

    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("session_id", "status", "mechanic_id", "assignment_id", "assignment_status",
                                 "customer_id", "session_type", "plan", "refund", "changed")} == {
        "session_id": session.id, "status": "waiting", "mechanic_id": str(mechanic),
        "assignment_id": assignment, "assignment_status": "accepted", "customer_id": str(session.customer),
        "session_type": "chat", "plan": "free", "refund": None, "changed": True,
    }
    assert body["accepted_at"] is not None
    row = db.execute(
        "select role from public.session_participants where session_id = %s and user_id = %s", (session.id, mechanic),
    ).fetchone()
    assert row == {"role": "mechanic"}
    event = db.execute(
        "select user_id, metadata from public.session_events where session_id = %s and event_type = 'assigned'",
        (session.id,),
    ).fetchone()
    assert event == {"user_id": mechanic, "metadata": {"assignment_id": assignment, "from": "pending", "to": "waiting"}}
    assert_invariants(db, session.id)


def test_accepting_again_changes_nothing(call: Call, db: Db, new_session: NewSession,
                                         make_mechanic: MakeMechanic) -> None:
    session, mechanic = new_session(), make_mechanic()
    assignment = assignment_of(db, session.id)
    first = call("accept_assignment", assignment_id=assignment, mechanic_id=mechanic).json()

    again = call("accept_assignment", assignment_id=assignment, mechanic_id=mechanic)

    assert again.status_code == 200
    assert again.json() == {**first, "changed": False}
    assert event_types(db, session.id) == ["created", "assigned"]


def test_thirty_mechanics_accepting_one_assignment_at_once_give_one_winner(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic,
) -> None:
    session = new_session()
    assignment = assignment_of(db, session.id)
    mechanics = [make_mechanic() for _ in range(30)]

    with ThreadPoolExecutor(max_workers=30) as pool:
        replies = list(pool.map(lambda m: call("accept_assignment", assignment_id=assignment, mechanic_id=m),
                                mechanics))

    assert sorted(r.status_code for r in replies) == [200] + [409] * 29
    assert {r.json()["code"] for r in replies if r.status_code == 409} == {"ASSIGNMENT_TAKEN"}
    winner = next(r.json()["mechanic_id"] for r in replies if r.status_code == 200)
    participants = db.execute(
        "select user_id from public.session_participants where session_id = %s and role = 'mechanic'", (session.id,),
    ).fetchall()
    assert [str(p["user_id"]) for p in participants] == [winner]
    assert event_types(db, session.id).count("assigned") == 1
    assert_invariants(db, session.id)


@pytest.mark.parametrize(("who", "code"), NOT_ACTIVE_MECHANICS)
def test_only_active_mechanics_may_accept(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic, make_user: MakeUser,
    who: str, code: str,
) -> None:
    session = new_session()
    user = not_active_mechanic(who, make_mechanic, make_user)

    r = accept(call, db, session, user)

    assert refusal(r) == (403, code)
    assert status_of(db, session.id) == "pending"


def test_an_unknown_assignment_is_not_found(call: Call, make_mechanic: MakeMechanic) -> None:
    r = call("accept_assignment", assignment_id=uuid.uuid4(), mechanic_id=make_mechanic())
    assert refusal(r) == (404, "ASSIGNMENT_NOT_FOUND")


def test_an_assignment_of_a_cancelled_session_is_closed(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic,
) -> None:
    session = new_session()
    assignment = assignment_of(db, session.id)
    call("cancel_session", session_id=session.id, customer_id=session.customer)

    r = call("accept_assignment", assignment_id=assignment, mechanic_id=make_mechanic())

    assert refusal(r) == (409, "ASSIGNMENT_CLOSED")
    assert details(r) == {"assignment_status": "cancelled", "session_status": "cancelled"}


# Routing: who may accept what. "preferred" is the intake's preferred mechanic; "other" a regular
# mechanic; "specialist" a specialist who is not preferred; minutes: how long ago it was offered.
ROUTING_CASES = [
    ("broadcast", False, "other", 0, True),
    ("broadcast", True, "other", 0, False),
    ("broadcast", True, "specialist", 0, True),
    ("workshop_only", False, "preferred", 0, True),
    ("workshop_only", False, "other", 0, False),
    ("workshop_only", False, "specialist", 60, False),
    ("priority_broadcast", False, "preferred", 0, True),
    ("priority_broadcast", False, "other", 0, False),
    ("priority_broadcast", False, "other", 6, True),
    ("priority_broadcast", True, "other", 6, False),
    ("hybrid", False, "preferred", 0, True),
    ("hybrid", False, "specialist", 0, True),
    ("hybrid", False, "other", 0, False),
    ("hybrid", True, "preferred", 0, True),
]


@pytest.mark.parametrize(("routing", "needs_specialist", "who", "minutes", "allowed"), ROUTING_CASES)
def test_routing_decides_who_may_accept_and_who_sees_it_queued(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic,
    routing: str, needs_specialist: bool, who: str, minutes: int, allowed: bool,
) -> None:
    preferred = make_mechanic()
    mechanic = {"preferred": preferred, "other": make_mechanic(),
                "specialist": make_mechanic(is_specialist=True)}[who]
    session = new_session(routing_type=routing, is_specialist=needs_specialist,
                          preferred_mechanic_id=str(preferred))
    make_old(db, session.id, minutes)
    assignment = assignment_of(db, session.id)

    queue = call("mechanic_queue_for", mechanic_id=mechanic, max_items=1000).json()
    r = call("accept_assignment", assignment_id=assignment, mechanic_id=mechanic)

    assert (assignment in {item["assignment_id"] for item in queue}) is allowed
    assert (r.status_code, r.json().get("code")) == ((200, None) if allowed else (403, "NOT_ELIGIBLE"))


WITHOUT_PREFERRED = [
    ("broadcast", True, "other", False),
    ("workshop_only", False, "other", True),
    ("priority_broadcast", False, "other", True),
    ("hybrid", False, "other", False),
    ("hybrid", False, "specialist", True),
]


@pytest.mark.parametrize(("routing", "needs_specialist", "who", "allowed"), WITHOUT_PREFERRED)
def test_routing_without_a_preferred_mechanic_still_refuses_who_it_should(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic,
    routing: str, needs_specialist: bool, who: str, allowed: bool,
) -> None:
    mechanic = make_mechanic(is_specialist=who == "specialist")
    session = new_session(routing_type=routing, is_specialist=needs_specialist)
    assignment = assignment_of(db, session.id)

    queue = call("mechanic_queue_for", mechanic_id=mechanic, max_items=1000).json()
    r = call("accept_assignment", assignment_id=assignment, mechanic_id=mechanic)

    assert (assignment in {item["assignment_id"] for item in queue}) is allowed
    assert (r.status_code, r.json().get("code")) == ((200, None) if allowed else (403, "NOT_ELIGIBLE"))


def test_a_mechanic_cannot_accept_their_own_session(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic,
) -> None:
    mechanic = make_mechanic()
    session = new_session(mechanic)
    r = accept(call, db, session, mechanic)
    assert refusal(r) == (403, "NOT_ELIGIBLE")


def test_the_queue_lists_open_assignments_urgent_first_then_newest(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic,
) -> None:
    sessions = [new_session(urgent=urgent) for urgent in (False, True, False, True)]
    taken = new_session()
    accept(call, db, taken, make_mechanic())

    queue = call("mechanic_queue_for", mechanic_id=make_mechanic(), max_items=1000).json()

    mine = [item for item in queue if item["session_id"] in {s.id for s in [*sessions, taken]}]
    assert [item["session_id"] for item in mine] == [sessions[3].id, sessions[1].id, sessions[2].id, sessions[0].id]
    assert set(mine[0]) == {"assignment_id", "session_id", "session_type", "plan", "urgent", "offered_at",
                            "routing_type", "preferred"}
    assert (mine[0]["urgent"], mine[0]["routing_type"], mine[0]["preferred"]) == (True, "broadcast", False)


@pytest.mark.parametrize(("who", "code"), NOT_ACTIVE_MECHANICS)
def test_the_queue_is_only_for_active_mechanics(
    call: Call, make_mechanic: MakeMechanic, make_user: MakeUser, who: str, code: str,
) -> None:
    user = not_active_mechanic(who, make_mechanic, make_user)
    assert refusal(call("mechanic_queue_for", mechanic_id=user)) == (403, code)


# Start, complete, release


def test_the_assigned_mechanic_starts_then_completes_the_session(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic,
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic)

    started = call("start_session", session_id=session.id, mechanic_id=mechanic)
    assert (started.status_code, started.json()["status"], started.json()["changed"]) == (200, "live", True)
    assert_invariants(db, session.id)
    completed = call("complete_session", session_id=session.id, mechanic_id=mechanic)

    assert (completed.status_code, completed.json()["status"]) == (200, "completed")
    assert completed.json()["mechanic_id"] == str(mechanic)
    assert event_types(db, session.id) == ["created", "assigned", "started", "ended"]
    assert_invariants(db, session.id)


@pytest.mark.parametrize("function", ["start_session", "complete_session"])
def test_repeating_a_done_transition_changes_nothing(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic, function: str,
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic)
    call("start_session", session_id=session.id, mechanic_id=mechanic)
    if function == "complete_session":
        call("complete_session", session_id=session.id, mechanic_id=mechanic)
    before = event_types(db, session.id)

    again = call(function, session_id=session.id, mechanic_id=mechanic)

    assert (again.status_code, again.json()["changed"]) == (200, False)
    assert event_types(db, session.id) == before


@pytest.mark.parametrize("function", ["start_session", "complete_session", "release_session"])
def test_only_the_assigned_mechanic_may_move_the_session(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic, function: str,
) -> None:
    session = accepted(make_mechanic())
    r = call(function, session_id=session.id, mechanic_id=make_mechanic())
    assert refusal(r) == (403, "NOT_ASSIGNED_MECHANIC")
    assert status_of(db, session.id) == "waiting"


@pytest.mark.parametrize("function", ["start_session", "complete_session", "release_session"])
def test_an_unknown_session_is_not_found_for_mechanics(call: Call, make_mechanic: MakeMechanic,
                                                       function: str) -> None:
    r = call(function, session_id=uuid.uuid4(), mechanic_id=make_mechanic())
    assert refusal(r) == (404, "SESSION_NOT_FOUND")


@pytest.mark.parametrize(
    ("steps", "function", "status"),
    [
        ([], "complete_session", "waiting"),
        (["start_session"], "release_session", "live"),
        (["start_session", "complete_session"], "start_session", "completed"),
    ],
)
def test_a_transition_from_the_wrong_status_is_refused(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic,
    steps: list[str], function: str, status: str,
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic)
    for step in steps:
        call(step, session_id=session.id, mechanic_id=mechanic)

    r = call(function, session_id=session.id, mechanic_id=mechanic)

    assert refusal(r) == (409, "INVALID_TRANSITION")
    assert details(r)["status"] == status
    assert status_of(db, session.id) == status


def test_release_puts_the_session_back_in_the_queue_with_a_fresh_offer(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic,
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic)
    old = assignment_of(db, session.id, "accepted")
    db.execute("update public.session_assignments set offered_at = now() - interval '1 hour' where id = %s", (old,))

    r = call("release_session", session_id=session.id, mechanic_id=mechanic)

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["mechanic_id"], body["assignment_status"], body["changed"]) == (
        "pending", None, "queued", True)
    fresh = assignment_of(db, session.id)
    assert body["assignment_id"] == fresh != old
    row = db.execute(
        "select now() - offered_at < interval '1 minute' as recent from public.session_assignments where id = %s",
        (fresh,),
    ).fetchone()
    assert row == {"recent": True}
    assert assignment_of(db, session.id, "cancelled") == old
    assert event_types(db, session.id)[-1] == "released"
    assert_invariants(db, session.id)
    other = call("accept_assignment", assignment_id=fresh, mechanic_id=make_mechanic())
    assert other.status_code == 200


def test_releasing_again_changes_nothing(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic,
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic)
    call("release_session", session_id=session.id, mechanic_id=mechanic)

    again = call("release_session", session_id=session.id, mechanic_id=mechanic)

    assert (again.status_code, again.json()["changed"]) == (200, False)
    assert event_types(db, session.id).count("released") == 1


# Cancel


@pytest.mark.parametrize("status", ["pending", "waiting"])
def test_a_customer_cancels_a_session_not_yet_started(
    call: Call, db: Db, new_session: NewSession, accepted: Callable[..., Session], make_mechanic: MakeMechanic,
    status: str,
) -> None:
    mechanic = make_mechanic()
    session = new_session() if status == "pending" else accepted(mechanic)

    r = call("cancel_session", session_id=session.id, customer_id=session.customer, reason="changed my mind")

    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["changed"], r.json()["refund"]) == ("cancelled", True, None)
    event = db.execute(
        "select user_id, metadata from public.session_events where session_id = %s and event_type = 'cancelled'",
        (session.id,),
    ).fetchone()
    assert event == {"user_id": session.customer,
                     "metadata": {"reason": "changed my mind", "from": status, "to": "cancelled"}}
    assert_invariants(db, session.id)
    if status == "waiting":
        late = call("start_session", session_id=session.id, mechanic_id=mechanic)
        assert refusal(late) == (409, "INVALID_TRANSITION")


@pytest.mark.parametrize("steps", [["start_session"], ["start_session", "complete_session"]])
def test_a_started_or_ended_session_cannot_be_cancelled(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic, steps: list[str],
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic, paid_with="stripe")
    for step in steps:
        call(step, session_id=session.id, mechanic_id=mechanic)

    r = call("cancel_session", session_id=session.id, customer_id=session.customer)

    assert refusal(r) == (409, "SESSION_NOT_CANCELLABLE")
    assert details(r) == {"status": "live" if len(steps) == 1 else "completed"}
    assert outbox_rows(db, session.id) == []


def test_another_customers_session_is_not_found(
    call: Call, db: Db, new_session: NewSession, make_user: MakeUser,
) -> None:
    session = new_session()
    r = call("cancel_session", session_id=session.id, customer_id=make_user())
    assert refusal(r) == (404, "SESSION_NOT_FOUND")
    assert status_of(db, session.id) == "pending"


def test_cancelling_a_paid_session_ten_times_at_once_and_again_refunds_once(
    call: Call, db: Db, new_session: NewSession,
) -> None:
    session = new_session(paid_with="stripe")
    with ThreadPoolExecutor(max_workers=10) as pool:
        replies = list(pool.map(
            lambda _: call("cancel_session", session_id=session.id, customer_id=session.customer), range(10)))
    again = call("cancel_session", session_id=session.id, customer_id=session.customer)

    assert {r.status_code for r in [*replies, again]} == {200}
    assert sum(r.json()["changed"] for r in [*replies, again]) == 1
    rows = outbox_rows(db, session.id)
    assert [(r["kind"], r["idempotency_key"], r["status"], r["amount"]) for r in rows] == [
        ("refund", f"refund-{session.checkout}", "pending", 2999)]
    events = event_types(db, session.id)
    assert (events.count("cancelled"), events.count("refunded")) == (1, 1)
    assert again.json()["refund"] == {
        "method": "stripe", "status": "requested", "outbox_id": rows[0]["id"], "amount": 2999,
        "checkout_session_id": session.checkout, "reason": "cancelled", "payment_id": str(rows[0]["payment_id"]),
    }
    assert_invariants(db, session.id)


def test_the_refund_request_carries_the_payment_intent_the_payment_recorded(
    call: Call, db: Db, new_session: NewSession,
) -> None:
    session = new_session(paid_with="stripe")

    call("cancel_session", session_id=session.id, customer_id=session.customer)

    [row] = outbox_rows(db, session.id)
    assert row["params"]["payment_intent"] == payment(db, session.checkout)["payment_intent"] == row["payment_intent"]
    assert payment(db, session.checkout)["status"] == "refund_requested"


def test_cancelling_a_credits_session_gives_the_credits_back_once(
    call: Call, db: Db, new_session: NewSession,
) -> None:
    session = new_session(paid_with="credits")
    assert balance(db, session.customer) == 0

    with ThreadPoolExecutor(max_workers=5) as pool:
        list(pool.map(lambda _: call("cancel_session", session_id=session.id, customer_id=session.customer),
                      range(5)))

    assert balance(db, session.customer) == 1
    refund = call("cancel_session", session_id=session.id, customer_id=session.customer).json()["refund"]
    assert (refund["method"], refund["credits"]) == ("credits", 1)
    assert_invariants(db, session.id)


# Expire


SetLimits = Callable[..., dict[str, Any]]


@pytest.fixture
def limits(call: Call) -> Iterator[SetLimits]:
    """Change the session limits for one test; the defaults come back after it."""

    def _set(**values: int) -> dict[str, Any]:
        r = call("set_session_limits", **values)
        assert r.status_code == 200, r.text
        return dict(r.json())

    yield _set
    _set(**DEFAULT_LIMITS)


DEFAULT_LIMITS = {"pending_expiry_minutes": 30, "urgent_pending_expiry_minutes": 10, "no_show_minutes": 10,
                  "live_grace_minutes": 15}


@pytest.fixture
def sweep(call: Call) -> Callable[..., dict[str, Any]]:
    def _sweep(**args: Any) -> dict[str, Any]:
        r = call("expire_sessions", **args)
        assert r.status_code == 200, r.text
        return dict(r.json())

    return _sweep


def test_old_pending_sessions_expire_with_their_refunds(
    db: Db, new_session: NewSession, sweep: Callable[..., dict[str, Any]],
) -> None:
    paid, credits, free = (new_session(paid_with=m) for m in ("stripe", "credits", "free"))
    for session in (paid, credits, free):
        make_old(db, session.id, 31)

    result = sweep()

    assert {paid.id, credits.id, free.id} <= set(result["session_ids"])
    assert result["expired"] == len(result["session_ids"])
    for session in (paid, credits, free):
        assert status_of(db, session.id) == "expired"
        assert event_types(db, session.id)[-2:] in (["expired", "refunded"], ["created", "expired"])
        assert_invariants(db, session.id)
    assert [r["idempotency_key"] for r in outbox_rows(db, paid.id)] == [f"refund-{paid.checkout}"]
    assert balance(db, credits.customer) == 1
    assert assignment_of(db, free.id, "expired")


@pytest.mark.parametrize(("urgent", "minutes", "expires"),
                         [(False, 29, False), (False, 31, True), (True, 9, False), (True, 11, True)])
def test_urgent_sessions_expire_sooner(
    db: Db, new_session: NewSession, sweep: Callable[..., dict[str, Any]], urgent: bool, minutes: int,
    expires: bool,
) -> None:
    session = new_session(urgent=urgent)
    make_old(db, session.id, minutes)
    assert (session.id in sweep()["session_ids"]) is expires
    assert status_of(db, session.id) == ("expired" if expires else "pending")


def test_the_sweep_reads_its_limits_from_the_session_limits_row(
    db: Db, new_session: NewSession, sweep: Callable[..., dict[str, Any]], limits: SetLimits,
) -> None:
    session = new_session(urgent=True)
    make_old(db, session.id, 40)
    limits(urgent_pending_expiry_minutes=60)
    assert session.id not in sweep()["session_ids"]
    limits(urgent_pending_expiry_minutes=39)
    assert session.id in sweep()["session_ids"]


def test_accepted_sessions_do_not_expire(
    db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic, sweep: Callable[..., dict[str, Any]],
) -> None:
    session = accepted(make_mechanic())
    db.execute("update public.session_assignments set offered_at = now() - interval '2 hours'"
               " where session_id = %s", (session.id,))
    assert session.id not in sweep()["session_ids"]
    assert status_of(db, session.id) == "waiting"


def test_release_restarts_the_expiry_clock(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic,
    sweep: Callable[..., dict[str, Any]],
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic)
    db.execute("update public.session_assignments set offered_at = now() - interval '2 hours'"
               " where session_id = %s", (session.id,))
    call("release_session", session_id=session.id, mechanic_id=mechanic)

    assert session.id not in sweep()["session_ids"]
    assert status_of(db, session.id) == "pending"


def test_two_sweeps_at_once_expire_and_refund_each_session_once(
    db: Db, new_session: NewSession, sweep: Callable[..., dict[str, Any]],
) -> None:
    sessions = [new_session(paid_with="stripe" if i % 2 else "credits") for i in range(20)]
    for session in sessions:
        make_old(db, session.id, 45)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: sweep(), range(2)))

    mine = {s.id for s in sessions}
    expired = [sid for result in results for sid in result["session_ids"] if sid in mine]
    assert sorted(expired) == sorted(mine)
    for session in sessions:
        assert_invariants(db, session.id)


def test_a_sweep_does_not_wait_for_a_busy_customer(
    stack: StackInfo, db: Db, new_session: NewSession, sweep: Callable[..., dict[str, Any]],
) -> None:
    session = new_session()
    make_old(db, session.id, 45)
    with psycopg.connect(stack.database_url) as holder:
        holder.execute(
            "select pg_advisory_xact_lock(hashtextextended('create_session_record:' || %s, 0))",
            (str(session.customer),),
        )
        busy = sweep()
        holder.rollback()
    later = sweep()

    assert session.id not in busy["session_ids"]
    assert busy["skipped"] >= 1
    assert session.id in later["session_ids"]


def test_accept_and_expire_racing_have_exactly_one_winner(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic,
) -> None:
    mechanic = make_mechanic()
    sessions = [new_session() for _ in range(8)]
    for session in sessions:
        make_old(db, session.id, 45)
    assignments = {s.id: assignment_of(db, s.id) for s in sessions}
    start = threading.Barrier(len(sessions) + 1)

    def take(session: Session) -> httpx.Response:
        start.wait()
        return call("accept_assignment", assignment_id=assignments[session.id], mechanic_id=mechanic)

    def expire() -> httpx.Response:
        start.wait()
        return call("expire_sessions")

    with ThreadPoolExecutor(max_workers=len(sessions) + 1) as pool:
        accepts = [pool.submit(take, s) for s in sessions]
        swept = pool.submit(expire)
        replies = [f.result() for f in accepts]
        expired = set(swept.result().json()["session_ids"])

    for session, reply in zip(sessions, replies, strict=True):
        accepted_first = reply.status_code == 200
        assert accepted_first != (session.id in expired), reply.text
        if not accepted_first:
            assert refusal(reply) == (409, "ASSIGNMENT_CLOSED")
        assert status_of(db, session.id) == ("waiting" if accepted_first else "expired")
        assert_invariants(db, session.id)


# No-show and the live time limit (the same sweep, the same limits row)


def make_accepted_long_ago(db: Db, session_id: str, minutes: int) -> None:
    db.execute("update public.session_assignments set accepted_at = now() - make_interval(mins => %s)"
               " where session_id = %s and status = 'accepted'", (minutes, session_id))


def make_started_long_ago(db: Db, session_id: str, minutes: int) -> None:
    db.execute("update public.sessions set started_at = now() - make_interval(mins => %s) where id = %s",
               (minutes, session_id))


def test_a_waiting_session_not_started_in_time_goes_back_to_the_queue(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic,
    sweep: Callable[..., dict[str, Any]],
) -> None:
    mechanic, other = make_mechanic(), make_mechanic()
    session = accepted(mechanic)
    old = assignment_of(db, session.id, "accepted")
    make_accepted_long_ago(db, session.id, 11)

    result = sweep()

    assert session.id in result["no_show_session_ids"]
    assert status_of(db, session.id) == "pending"
    fresh = assignment_of(db, session.id)
    assert fresh in [q["assignment_id"] for q in call("mechanic_queue_for", mechanic_id=other).json()]
    event = db.execute(
        "select user_id, metadata from public.session_events where session_id = %s and event_type = 'released'",
        (session.id,),
    ).fetchone()
    assert event == {"user_id": None, "metadata": {
        "reason": "no_show", "assignment_id": old, "new_assignment_id": fresh, "mechanic_id": str(mechanic),
        "from": "waiting", "to": "pending"}}
    assert_invariants(db, session.id)


def test_a_no_show_restarts_the_expiry_clock_and_refunds_nothing(
    db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic, sweep: Callable[..., dict[str, Any]],
) -> None:
    session = accepted(make_mechanic(), paid_with="stripe")
    db.execute("update public.session_assignments set offered_at = now() - interval '2 hours'"
               " where session_id = %s", (session.id,))
    make_accepted_long_ago(db, session.id, 11)

    sweep()

    row = db.execute("select now() - offered_at < interval '1 minute' as fresh from public.session_assignments"
                     " where session_id = %s and status = 'queued'", (session.id,)).fetchone()
    assert row == {"fresh": True}
    assert outbox_rows(db, session.id) == []
    assert "refunded" not in event_types(db, session.id)


def test_a_waiting_session_within_the_no_show_limit_stays_with_its_mechanic(
    db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic, sweep: Callable[..., dict[str, Any]],
) -> None:
    session = accepted(make_mechanic())
    make_accepted_long_ago(db, session.id, 9)
    assert session.id not in sweep()["no_show_session_ids"]
    assert status_of(db, session.id) == "waiting"


def test_a_live_session_past_its_plan_and_grace_ends_as_completed_with_the_reason(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic,
    sweep: Callable[..., dict[str, Any]],
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic, paid_with="stripe")  # standard: 30 minutes
    assert call("start_session", session_id=session.id, mechanic_id=mechanic).status_code == 200
    make_started_long_ago(db, session.id, 46)

    result = sweep()

    assert session.id in result["timed_out_session_ids"]
    assert status_of(db, session.id) == "completed"
    event = db.execute(
        "select user_id, metadata from public.session_events where session_id = %s and event_type = 'ended'",
        (session.id,),
    ).fetchone()
    assert event is not None and event["user_id"] is None
    assert (event["metadata"]["reason"], event["metadata"]["limit_minutes"]) == ("time_limit", 45)
    assert outbox_rows(db, session.id) == []  # delivered: nothing refunded
    assert_invariants(db, session.id)


def test_a_live_session_within_its_plan_and_grace_goes_on(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic,
    sweep: Callable[..., dict[str, Any]],
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic, paid_with="stripe")
    call("start_session", session_id=session.id, mechanic_id=mechanic)
    make_started_long_ago(db, session.id, 44)
    assert session.id not in sweep()["timed_out_session_ids"]
    assert status_of(db, session.id) == "live"


def test_after_the_time_limit_the_customer_may_book_again(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic, new_session: NewSession,
    sweep: Callable[..., dict[str, Any]],
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic)
    call("start_session", session_id=session.id, mechanic_id=mechanic)
    make_started_long_ago(db, session.id, 31)  # free: 15 minutes + 15 of grace

    sweep()

    assert status_of(db, new_session(session.customer).id) == "pending"


def test_the_no_show_and_grace_limits_are_read_from_the_session_limits_row(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic, limits: SetLimits,
    sweep: Callable[..., dict[str, Any]],
) -> None:
    waiting, live_mechanic = accepted(make_mechanic()), make_mechanic()
    live = accepted(live_mechanic)
    call("start_session", session_id=live.id, mechanic_id=live_mechanic)
    make_accepted_long_ago(db, waiting.id, 4)
    make_started_long_ago(db, live.id, 16)

    limits(no_show_minutes=3, live_grace_minutes=0)
    result = sweep()

    assert waiting.id in result["no_show_session_ids"] and live.id in result["timed_out_session_ids"]
    assert {k: result["limits"][k] for k in DEFAULT_LIMITS} == {**DEFAULT_LIMITS, "no_show_minutes": 3,
                                                                "live_grace_minutes": 0}


@pytest.mark.parametrize("value", [{"no_show_minutes": 0}, {"pending_expiry_minutes": 10081},
                                   {"live_grace_minutes": -1}])
def test_a_session_limit_out_of_range_is_refused_and_changes_nothing(call: Call, value: dict[str, int]) -> None:
    before = call("get_session_limits").json()
    r = call("set_session_limits", **value)
    assert refusal(r) == (422, "INVALID_ARGUMENT")
    assert next(iter(value)) in r.json()["message"]
    assert call("get_session_limits").json() == before


def test_the_command_pg_cron_runs_obeys_the_session_limits_row(
    db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic, limits: SetLimits,
) -> None:
    session = accepted(make_mechanic())
    make_accepted_long_ago(db, session.id, 6)
    command = pg_cron_command()
    limits(no_show_minutes=7)
    db.execute(command)
    assert status_of(db, session.id) == "waiting"

    limits(no_show_minutes=5)
    db.execute(command)

    assert status_of(db, session.id) == "pending"


# The waiver before start


@pytest.mark.parametrize("paid_with", ["free", "credits", "stripe"])
def test_a_session_whose_customer_has_not_signed_the_waiver_cannot_start(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic, paid_with: str,
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic, paid_with=paid_with, waiver=False)

    r = call("start_session", session_id=session.id, mechanic_id=mechanic)

    assert refusal(r) == (409, "WAIVER_NOT_SIGNED")
    assert status_of(db, session.id) == "waiting"


def test_once_the_waiver_is_signed_the_session_starts(
    call: Call, db: Db, accepted: Callable[..., Session], make_mechanic: MakeMechanic,
) -> None:
    mechanic = make_mechanic()
    session = accepted(mechanic, waiver=False)
    call("start_session", session_id=session.id, mechanic_id=mechanic)
    db.execute("update public.intakes set waiver_signed_at = now()"
               " where id = (select intake_id from public.sessions where id = %s)", (session.id,))

    r = call("start_session", session_id=session.id, mechanic_id=mechanic)

    assert (r.status_code, r.json()["status"]) == (200, "live")


# Decline


def preferred_session(new_session: NewSession, preferred: uuid.UUID, routing: str) -> Session:
    return new_session(preferred_mechanic_id=preferred, routing_type=routing)


@pytest.mark.parametrize("routing", ["priority_broadcast", "workshop_only"])
def test_a_declined_offer_is_offered_to_everyone_at_once(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic, routing: str,
) -> None:
    preferred, other = make_mechanic(), make_mechanic()
    session = preferred_session(new_session, preferred, routing)
    offer = assignment_of(db, session.id)
    assert session.id not in [q["session_id"] for q in call("mechanic_queue_for", mechanic_id=other).json()]

    r = call("decline_assignment", assignment_id=offer, mechanic_id=preferred)

    assert (r.status_code, r.json()["status"], r.json()["changed"]) == (200, "pending", True)
    queue = call("mechanic_queue_for", mechanic_id=other).json()
    assert [(q["assignment_id"], q["routing_type"]) for q in queue if q["session_id"] == session.id] == [
        (assignment_of(db, session.id), "broadcast")]
    assert assignment_of(db, session.id, "declined") == offer
    assert event_types(db, session.id)[-1] == "declined"
    assert call("accept_assignment", assignment_id=assignment_of(db, session.id), mechanic_id=other).status_code == 200
    assert_invariants(db, session.id)


def test_declining_again_is_a_conflict(call: Call, db: Db, new_session: NewSession,
                                       make_mechanic: MakeMechanic) -> None:
    preferred = make_mechanic()
    offer = assignment_of(db, preferred_session(new_session, preferred, "priority_broadcast").id)
    call("decline_assignment", assignment_id=offer, mechanic_id=preferred)

    again = call("decline_assignment", assignment_id=offer, mechanic_id=preferred)

    assert refusal(again) == (409, "ASSIGNMENT_ALREADY_DECLINED")


def test_only_the_mechanic_an_offer_names_may_decline_it(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic,
) -> None:
    preferred, other = make_mechanic(), make_mechanic()
    named = assignment_of(db, preferred_session(new_session, preferred, "priority_broadcast").id)
    anyone = assignment_of(db, new_session().id)

    assert refusal(call("decline_assignment", assignment_id=named, mechanic_id=other)) == (
        403, "NOT_PREFERRED_MECHANIC")
    assert refusal(call("decline_assignment", assignment_id=anyone, mechanic_id=other)) == (
        403, "NOT_PREFERRED_MECHANIC")


def test_an_offer_already_accepted_cannot_be_declined(
    call: Call, db: Db, new_session: NewSession, make_mechanic: MakeMechanic,
) -> None:
    preferred = make_mechanic()
    session = preferred_session(new_session, preferred, "workshop_only")
    offer = assignment_of(db, session.id)
    call("accept_assignment", assignment_id=offer, mechanic_id=preferred)

    assert refusal(call("decline_assignment", assignment_id=offer, mechanic_id=preferred)) == (
        409, "ASSIGNMENT_CLOSED")


# A session that has ended frees the customer


def _end(call: Call, db: Db, session: Session, mechanic: uuid.UUID, how: str) -> None:
    if how == "cancel":
        call("cancel_session", session_id=session.id, customer_id=session.customer)
    elif how == "expire":
        make_old(db, session.id, 45)
        call("expire_sessions")
    else:
        r = accept(call, db, session, mechanic)
        assert r.status_code == 200
        if how in ("start", "complete"):
            call("start_session", session_id=session.id, mechanic_id=mechanic)
        if how == "complete":
            call("complete_session", session_id=session.id, mechanic_id=mechanic)


@pytest.mark.parametrize(
    ("how", "next_status"),
    [("complete", 200), ("cancel", 200), ("expire", 200), ("accept", 409), ("start", 409), ("stay", 409)],
)
def test_the_next_session_is_allowed_once_the_last_has_ended(
    call: Call, db: Db, new_session: NewSession, make_intake: Callable[..., uuid.UUID],
    make_mechanic: MakeMechanic, how: str, next_status: int,
) -> None:
    session = new_session()
    _end(call, db, session, make_mechanic(), how)
    assert_invariants(db, session.id)

    r = call("create_session_record", customer_id=session.customer, plan="free",
             intake_id=make_intake(session.customer), payment_method="free")

    assert r.status_code == next_status, r.text
    if next_status == 409:
        assert r.json()["code"] == "ACTIVE_SESSION_EXISTS"
        assert details(r)["activeSessionId"] == session.id


# The Stripe outbox


def checkout_id() -> str:
    return f"cs_test_{uuid.uuid4().hex}"


@pytest.fixture
def claims(db: Db, call: Call) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """claim_stripe_requests over HTTP; afterwards, rows of other tests that were claimed are let go."""
    mine: set[int] = set()
    claimed: set[int] = set()

    def _claim(own: set[int], **args: Any) -> list[dict[str, Any]]:
        mine.update(own)
        r = call("claim_stripe_requests", **{"max_requests": 1000, **args})
        assert r.status_code == 200, r.text
        rows: list[dict[str, Any]] = r.json()
        claimed.update(row["id"] for row in rows)
        return [row for row in rows if row["id"] in own]

    yield _claim
    foreign = list(claimed - mine)
    if foreign:
        db.execute("update public.stripe_outbox set locked_until = null, attempts = attempts - 1"
                   " where id = any(%s)", (foreign,))


@pytest.fixture
def checkout(db: Db, make_user: MakeUser, make_intake: Callable[..., uuid.UUID]) -> Callable[..., str]:
    """A Checkout opened for a fresh customer's paid intake; `paid=True`: Stripe has taken the money."""

    def _checkout(*, paid: bool = False) -> str:
        customer = make_user()
        cs = open_payment(db, customer, make_intake(customer, "standard"))
        if paid:
            db.execute("update public.payments set status = 'paid', paid_at = now(), amount_paid = amount,"
                       " payment_intent = 'pi_' || md5(id::text) where checkout_session_id = %s", (cs,))
        return cs

    return _checkout


def enqueue(call: Call, checkout: str, kind: str = "expire_checkout", **args: Any) -> dict[str, Any]:
    r = call("enqueue_stripe_request", kind=kind, checkout_session_id=checkout, **args)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_many_concurrent_refund_requests_for_one_payment_make_one_row(
    call: Call, db: Db, checkout: Callable[..., str],
) -> None:
    cs = checkout(paid=True)
    with ThreadPoolExecutor(max_workers=20) as pool:
        rows = list(pool.map(lambda i: enqueue(call, cs, "refund", reason=f"attempt {i}"), range(20)))

    assert len({r["id"] for r in rows}) == 1
    assert rows[0]["idempotency_key"] == f"refund-{cs}"
    assert rows[0]["params"]["amount"] == 2999 and rows[0]["params"]["payment_intent"].startswith("pi_")
    assert payment(db, cs)["status"] == "refund_requested"
    count = db.execute("select count(*) as n from public.stripe_outbox where checkout_session_id = %s",
                       (cs,)).fetchone()
    assert count == {"n": 1}


def test_an_open_checkout_cannot_be_refunded_only_expired(call: Call, checkout: Callable[..., str]) -> None:
    cs = checkout()
    assert refusal(call("enqueue_stripe_request", kind="refund", checkout_session_id=cs)) == (409, "NOTHING_TO_SEND")
    assert enqueue(call, cs)["idempotency_key"] == f"expire-checkout-{cs}"


@pytest.mark.parametrize(
    ("args", "status", "code"),
    [
        ({"kind": "charge"}, 422, "INVALID_KIND"),
        ({"checkout_session_id": "pi_123"}, 422, "INVALID_STRIPE_SESSION"),
        ({}, 404, "PAYMENT_NOT_FOUND"),
    ],
)
def test_an_invalid_request_is_refused(call: Call, args: dict[str, Any], status: int, code: str) -> None:
    r = call("enqueue_stripe_request", **{"kind": "refund", "checkout_session_id": checkout_id(), **args})
    assert refusal(r) == (status, code)


def test_two_concurrent_claimers_never_claim_the_same_request(
    call: Call, checkout: Callable[..., str], claims: Callable[..., list[dict[str, Any]]],
) -> None:
    own = {enqueue(call, checkout())["id"] for _ in range(30)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = list(pool.map(lambda _: claims(own, max_requests=10), range(4)))

    ids = [row["id"] for batch in batches for row in batch]
    assert len(ids) == len(set(ids))
    assert all(row["attempts"] == 1 and row["locked_until"] for batch in batches for row in batch)


def test_a_claimed_request_is_not_claimed_again_while_leased(
    call: Call, checkout: Callable[..., str], claims: Callable[..., list[dict[str, Any]]],
) -> None:
    own = {enqueue(call, checkout())["id"]}
    assert [r["id"] for r in claims(own)] == list(own)
    assert claims(own) == []


def test_a_request_whose_lease_ran_out_is_claimed_again(
    call: Call, checkout: Callable[..., str], db: Db, claims: Callable[..., list[dict[str, Any]]],
) -> None:
    own = {enqueue(call, checkout())["id"]}
    claims(own)
    db.execute("update public.stripe_outbox set locked_until = now() - interval '1 second' where id = any(%s)",
               (list(own),))
    again = claims(own)
    assert [(r["id"], r["attempts"]) for r in again] == [(next(iter(own)), 2)]


def test_sent_records_stripes_id_and_is_idempotent(
    call: Call, checkout: Callable[..., str], claims: Callable[..., list[dict[str, Any]]],
) -> None:
    row = enqueue(call, checkout())
    claims({row["id"]})

    sent = call("finish_stripe_request", id=row["id"], outcome="sent", stripe_object_id="re_1")
    again = call("finish_stripe_request", id=row["id"], outcome="sent", stripe_object_id="re_1")

    assert (sent.json()["status"], sent.json()["stripe_object_id"], sent.json()["changed"]) == ("sent", "re_1", True)
    assert sent.json()["sent_at"] is not None and sent.json()["locked_until"] is None
    assert (again.status_code, again.json()["changed"]) == (200, False)
    assert claims({row["id"]}) == []


def test_retry_puts_the_request_back_after_the_delay(
    call: Call, checkout: Callable[..., str], db: Db, claims: Callable[..., list[dict[str, Any]]],
) -> None:
    row = enqueue(call, checkout())
    claims({row["id"]})

    r = call("finish_stripe_request", id=row["id"], outcome="retry", error="Stripe 500", retry_in="5 minutes")

    assert (r.json()["status"], r.json()["last_error"], r.json()["locked_until"]) == ("pending", "Stripe 500", None)
    assert claims({row["id"]}) == []
    due = db.execute("select next_attempt_at - now() > interval '4 minutes' as later from public.stripe_outbox"
                     " where id = %s", (row["id"],)).fetchone()
    assert due == {"later": True}
    db.execute("update public.stripe_outbox set next_attempt_at = now() where id = %s", (row["id"],))
    assert [r["attempts"] for r in claims({row["id"]})] == [2]


def test_retry_without_a_delay_backs_off(
    call: Call, checkout: Callable[..., str], db: Db, claims: Callable[..., list[dict[str, Any]]],
) -> None:
    row = enqueue(call, checkout())
    claims({row["id"]})
    call("finish_stripe_request", id=row["id"], outcome="retry", error="timeout")
    delay = db.execute("select round(extract(epoch from next_attempt_at - updated_at)) as s from public.stripe_outbox"
                       " where id = %s", (row["id"],)).fetchone()
    assert delay == {"s": 30}


def test_failed_keeps_the_reason_and_is_never_claimed_again(
    call: Call, checkout: Callable[..., str], claims: Callable[..., list[dict[str, Any]]],
) -> None:
    row = enqueue(call, checkout())
    claims({row["id"]})

    failed = call("finish_stripe_request", id=row["id"], outcome="failed", error="charge already refunded")
    late = call("finish_stripe_request", id=row["id"], outcome="sent", stripe_object_id="re_2")

    assert (failed.json()["status"], failed.json()["last_error"]) == ("failed", "charge already refunded")
    assert (late.json()["status"], late.json()["changed"]) == ("failed", False)  # another worker's finish: done
    assert claims({row["id"]}) == []


@pytest.mark.parametrize(
    ("args", "status", "code"),
    [
        ({"id": -1, "outcome": "sent"}, 404, "REQUEST_NOT_FOUND"),
        ({"id": 1, "outcome": "maybe"}, 422, "INVALID_OUTCOME"),
    ],
)
def test_finishing_wrongly_is_refused(call: Call, args: dict[str, Any], status: int, code: str) -> None:
    assert refusal(call("finish_stripe_request", **args)) == (status, code)


# Only the service may call any of this


@pytest.mark.parametrize("function", sorted(LIFECYCLE_FUNCTIONS))
@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_api_roles_cannot_call_the_lifecycle_functions(
    call: Call, mint: Callable[..., str], function: str, role: str,
) -> None:
    token = mint(role, sub=str(uuid.uuid4()), aud="authenticated")
    r = call(function, token=token, **LIFECYCLE_FUNCTIONS[function])
    assert refusal(r) == ({"anon": 401, "authenticated": 403}[role], "42501")


@pytest.mark.parametrize("function", sorted(LIFECYCLE_FUNCTIONS))
def test_lifecycle_functions_are_security_definer_with_an_empty_search_path(db: Db, function: str) -> None:
    row = db.execute(
        "select bool_and(prosecdef) as definer, bool_and(proconfig = array['search_path=\"\"']) as pinned,"
        " bool_or(has_function_privilege('anon', p.oid, 'execute')"
        "   or has_function_privilege('authenticated', p.oid, 'execute')) as exposed"
        " from pg_catalog.pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname = %s",
        (function,),
    ).fetchone()
    assert row == {"definer": True, "pinned": True, "exposed": False}


def test_customers_cannot_read_the_outbox(rest: httpx.Client, user_token: Callable[[uuid.UUID], str],
                                          make_user: MakeUser, call: Call, checkout: Callable[..., str]) -> None:
    enqueue(call, checkout())
    r = rest.get("/stripe_outbox", headers={"Authorization": f"Bearer {user_token(make_user())}"})
    assert r.status_code in (401, 403) or r.json() == []


# Schema


@pytest.mark.parametrize("event_type", ["expired", "released", "disputed"])
def test_the_events_check_allows_the_new_event_types(db: Db, new_session: NewSession, event_type: str) -> None:
    session = new_session()
    db.execute("insert into public.session_events (session_id, event_type) values (%s, %s)", (session.id, event_type))
    assert event_types(db, session.id)[-1] == event_type


def test_without_pg_cron_the_schedule_migration_is_a_recorded_no_op(db: Db) -> None:
    row = db.execute(
        "select (select count(*) from pg_catalog.pg_available_extensions where name = 'pg_cron') as available,"
        " to_regnamespace('cron') is null as no_cron_schema,"
        " (select count(*) from supabase_migrations.schema_migrations where name = 'schedule_session_expiry')"
        "   as recorded",
    ).fetchone()
    assert row == {"available": 0, "no_cron_schema": True, "recorded": 1}


def test_a_transition_bumps_updated_at(call: Call, db: Db, new_session: NewSession,
                                       make_mechanic: MakeMechanic) -> None:
    session = new_session()
    db.execute("update public.sessions set updated_at = now() - interval '1 day' where id = %s", (session.id,))
    accept(call, db, session, make_mechanic())
    row = db.execute("select now() - updated_at < interval '1 minute' as recent from public.sessions where id = %s",
                     (session.id,)).fetchone()
    assert row == {"recent": True}
