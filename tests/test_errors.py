"""One status per error code, the same from SQL and from Python: every code the SQL functions can
raise is raised through the real RPC and arrives as its class, with its class's status."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pysvc.errors import SQL_ERRORS, ApiError
from pysvc.local.stack import StackInfo
from pysvc.postgrest import Rpc, connect

Db = psycopg.Connection[dict[str, Any]]
Payload = dict[str, Any]
RAISES = re.compile(r"raise_api_error\(\s*(\d{3})\s*,\s*'([A-Z_]+)'")


def free(customer: uuid.UUID, intake_id: uuid.UUID, **extra: Any) -> Payload:
    return {"customer_id": str(customer), "plan": "free", "intake_id": str(intake_id), "payment_method": "free",
            **extra}


def paid(customer: uuid.UUID, intake: uuid.UUID, checkout: str, **extra: Any) -> Payload:
    return {"customer_id": str(customer), "plan": "standard", "intake_id": str(intake), "payment_method": "stripe",
            "stripe_session_id": checkout, "amount_paid": 2999, "currency": "usd", **extra}


@pytest.fixture(scope="module")
def call(stack: StackInfo) -> Iterator[Callable[[str, Payload], Any]]:
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


def _intake(db: Db, customer: uuid.UUID, plan: str = "free") -> uuid.UUID:
    row = db.execute(
        "insert into public.intakes (customer_user_id, plan) values (%s, %s) returning id", (customer, plan),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row["id"]))


def _ended_session(db: Db, call: Callable[[str, Payload], Any], customer: uuid.UUID) -> uuid.UUID:
    intake = _intake(db, customer)
    created = call("create_session_record", free(customer, intake))
    db.execute("update public.sessions set status = 'completed' where id = %s", (created["session_id"],))
    return intake


def _session_conflict(db: Db, call: Callable[[str, Payload], Any], customer: uuid.UUID) -> None:
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


def _cases() -> dict[str, Callable[[Db, Callable[[str, Payload], Any], uuid.UUID], Any]]:
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
        "STRIPE_SESSION_MISMATCH": lambda db, call, c: [
            call("create_session_record", paid(c, _intake(db, c, "standard"), "cs_test_" + c.hex)),
            call("create_session_record", paid(c, _intake(db, c, "standard"), "cs_test_" + c.hex))],
        "INSUFFICIENT_CREDITS": lambda db, call, c: call("create_session_record", {
            **free(c, _intake(db, c, "quick"), plan="quick"), "payment_method": "credits"}),
        "UNKNOWN_USER": lambda db, call, c: call("create_session_record", free(new(), new(), intake={})),
        "INVALID_INTAKE": lambda db, call, c: call("create_session_record", free(c, new(), intake={"vehicle_year": 1})),
        "SESSION_CONFLICT": _session_conflict,
    }


CASES = _cases()


@pytest.mark.parametrize("code", sorted(CASES))
def test_sql_error_reaches_python_as_its_class_with_its_status(
    code: str, db: Db, call: Callable[[str, Payload], Any], make_user: Callable[[], uuid.UUID],
) -> None:
    with pytest.raises(ApiError) as raised:
        CASES[code](db, call, make_user())

    assert type(raised.value) is SQL_ERRORS[code]
    assert (raised.value.http_status, raised.value.body()["code"]) == (SQL_ERRORS[code].status, code)


def test_every_sql_error_class_is_raised_by_a_case_above() -> None:
    assert set(SQL_ERRORS) - set(CASES) == set()
