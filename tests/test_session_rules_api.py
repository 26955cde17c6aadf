"""The lifecycle's rules on every path, over real HTTP on the real stack: no session holds a customer
forever (no-show, live time limit, one set of limits for every sweep), the waiver before start, a
preferred mechanic's decline, hostile text, and what a 5xx tells the caller."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from pysvc.errors import ConfigError, Misconfigured
from pysvc.local.stack import PROJECT_ROOT, StackInfo, mint_key
from pysvc.postgrest import error_for, is_transient
from pysvc.settings import load_settings
from tests.utils.app import api_settings, running_api
from tests.utils.lifecycle import pg_cron_command
from tests.utils.stripe import bearer

Db = psycopg.Connection[dict[str, Any]]
Token = Callable[[uuid.UUID], str]
MakeMechanic = Callable[..., uuid.UUID]
PYSVC = [sys.executable, "-m", "pysvc"]


def pysvc(stack: StackInfo, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with the stack's settings, as an operator runs it from cron."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "STRIPE_", "SESSION_"))}
    return subprocess.run([*PYSVC, *args], capture_output=True, text=True, timeout=120, check=False,
                          cwd=PROJECT_ROOT, env={**env, **stack.env(), "PYTHONPATH": str(PROJECT_ROOT)})


def start_free(api: httpx.Client, token: str, **intake: Any) -> dict[str, Any]:
    r = api.post("/api/intake/start", json={"plan": "free", **intake}, headers=bearer(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def sign(api: httpx.Client, token: str, intake_id: str) -> None:
    r = api.post(f"/api/intake/{intake_id}/waiver", headers=bearer(token))
    assert r.status_code == 200, r.text


def offer_of(api: httpx.Client, mechanic: str, session_id: str) -> str | None:
    queue = api.get("/api/mechanic/queue", headers=bearer(mechanic)).json()
    return next((q["assignmentId"] for q in queue if q["sessionId"] == session_id), None)


def accepted_session(api: httpx.Client, customer: str, mechanic: str, *, signed: bool = True) -> dict[str, Any]:
    started = start_free(api, customer)
    if signed:
        sign(api, customer, started["intakeId"])
    offer = offer_of(api, mechanic, started["sessionId"])
    assert api.post(f"/api/assignments/{offer}/accept", headers=bearer(mechanic)).status_code == 200
    return started


def age_acceptance(db: Db, session_id: str, minutes: int) -> None:
    db.execute("update public.session_assignments set accepted_at = now() - make_interval(mins => %s)"
               " where session_id = %s and status = 'accepted'", (minutes, session_id))


@pytest.fixture
def restore_limits(stack: StackInfo) -> Any:
    yield
    r = pysvc(stack, "sessions", "limits", "--set", "pending_expiry_minutes=30", "--set",
              "urgent_pending_expiry_minutes=10", "--set", "no_show_minutes=10", "--set", "live_grace_minutes=15")
    assert r.returncode == 0, r.stderr


# --- no session holds a customer forever -----------------------------------------------------

def test_a_no_show_is_back_in_the_queue_after_one_sweep_and_the_timeline_says_why(
    stack: StackInfo, api: httpx.Client, db: Db, customer: uuid.UUID, user_token: Token, make_mechanic: MakeMechanic,
) -> None:
    me, other = user_token(customer), user_token(make_mechanic())
    session = accepted_session(api, me, user_token(make_mechanic()))["sessionId"]
    age_acceptance(db, session, 11)

    swept = pysvc(stack, "sessions", "expire")

    assert swept.returncode == 0, swept.stderr
    assert "no-show(s) back in the queue" in swept.stdout
    detail = api.get(f"/api/sessions/{session}", headers=bearer(me)).json()
    assert detail["status"] == "pending" and detail["mechanicId"] is None
    assert [(e["event"], e.get("reason")) for e in detail["timeline"]][-1] == ("released", "no_show")
    assert offer_of(api, other, session) is not None


def test_a_live_session_past_its_limit_ends_and_the_customer_books_again(
    stack: StackInfo, api: httpx.Client, db: Db, customer: uuid.UUID, user_token: Token, make_mechanic: MakeMechanic,
) -> None:
    me, mechanic = user_token(customer), user_token(make_mechanic())
    session = accepted_session(api, me, mechanic)["sessionId"]
    assert api.post(f"/api/sessions/{session}/start", headers=bearer(mechanic)).status_code == 200
    db.execute("update public.sessions set started_at = now() - interval '31 minutes' where id = %s", (session,))

    assert pysvc(stack, "sessions", "expire").returncode == 0

    detail = api.get(f"/api/sessions/{session}", headers=bearer(me)).json()
    assert detail["status"] == "completed"
    assert [(e["event"], e.get("reason")) for e in detail["timeline"]][-1] == ("ended", "time_limit")
    assert api.post("/api/intake/start", json={"plan": "free"}, headers=bearer(me)).status_code == 200


def test_the_cli_sweep_and_pg_crons_command_obey_the_limits_the_cli_sets(
    stack: StackInfo, api: httpx.Client, db: Db, make_user: Callable[[], uuid.UUID], user_token: Token,
    make_mechanic: MakeMechanic, restore_limits: None,
) -> None:
    mechanic = user_token(make_mechanic())
    by_cli, by_cron = (accepted_session(api, user_token(make_user()), mechanic)["sessionId"] for _ in range(2))
    for session in (by_cli, by_cron):
        age_acceptance(db, session, 6)

    def status(session: str) -> str:
        row = db.execute("select status from public.sessions where id = %s", (session,)).fetchone()
        assert row is not None
        return str(row["status"])

    shown = pysvc(stack, "sessions", "limits", "--set", "no_show_minutes=7")
    pysvc(stack, "sessions", "expire")
    db.execute(pg_cron_command())
    assert (status(by_cli), status(by_cron)) == ("waiting", "waiting")

    assert pysvc(stack, "sessions", "limits", "--set", "no_show_minutes=5").returncode == 0
    pysvc(stack, "sessions", "expire")
    assert status(by_cli) == "pending"
    age_acceptance(db, by_cron, 6)
    db.execute(pg_cron_command())
    assert status(by_cron) == "pending"
    assert shown.returncode == 0 and "no_show_minutes                7" in shown.stdout


def test_a_limit_that_is_not_one_is_refused_in_one_line(stack: StackInfo) -> None:
    r = pysvc(stack, "sessions", "limits", "--set", "expiry=5")
    assert r.returncode == 2 and "not a session limit: one of pending_expiry_minutes" in r.stderr


def test_a_limit_out_of_range_is_refused_in_one_line(stack: StackInfo) -> None:
    r = pysvc(stack, "sessions", "limits", "--set", "no_show_minutes=0")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no_show_minutes is out of range" in r.stderr


def test_the_retired_expiry_setting_is_refused_naming_the_command_that_replaced_it(stack: StackInfo) -> None:
    with pytest.raises(ConfigError, match=r"SESSION_EXPIRY_MINUTES: no longer read .* `pysvc sessions limits "
                                          r"--set pending_expiry_minutes=MINUTES`"):
        load_settings(_env_file=None, supabase_url=stack.supabase_url,
                      supabase_service_role_key=stack.service_role_key, session_expiry_minutes="30")


# --- the waiver before start -----------------------------------------------------------------

def test_start_before_the_waiver_is_409_the_view_says_it_is_missing_and_after_signing_it_starts(
    api: httpx.Client, customer: uuid.UUID, user_token: Token, make_mechanic: MakeMechanic,
) -> None:
    me, mechanic = user_token(customer), user_token(make_mechanic())
    started = accepted_session(api, me, mechanic, signed=False)
    session = started["sessionId"]

    early = api.post(f"/api/sessions/{session}/start", headers=bearer(mechanic))
    unsigned = api.get(f"/api/sessions/{session}", headers=bearer(me)).json()
    sign(api, me, started["intakeId"])
    signed = api.get(f"/api/sessions/{session}", headers=bearer(me)).json()
    late = api.post(f"/api/sessions/{session}/start", headers=bearer(mechanic))

    assert (early.status_code, early.json()["code"]) == (409, "WAIVER_NOT_SIGNED")
    assert (unsigned["waiverSigned"], signed["waiverSigned"]) == (False, True)
    assert (late.status_code, late.json()["status"]) == (200, "live")


# --- decline ---------------------------------------------------------------------------------

def test_a_declined_priority_offer_is_in_everyone_elses_queue_at_once_and_declining_again_is_409(
    api: httpx.Client, customer: uuid.UUID, user_token: Token, make_mechanic: MakeMechanic,
) -> None:
    preferred = make_mechanic()
    mine, other = user_token(preferred), user_token(make_mechanic())
    session = start_free(api, user_token(customer), routing_type="priority_broadcast",
                         preferred_mechanic_id=str(preferred))["sessionId"]
    offer = offer_of(api, mine, session)
    hidden = offer_of(api, other, session)

    declined = api.post(f"/api/assignments/{offer}/decline", headers=bearer(mine))
    again = api.post(f"/api/assignments/{offer}/decline", headers=bearer(mine))

    assert hidden is None
    assert (declined.status_code, declined.json()["status"]) == (200, "pending")
    assert offer_of(api, other, session) == declined.json()["assignmentId"] != offer
    assert (again.status_code, again.json()["code"]) == (409, "ASSIGNMENT_ALREADY_DECLINED")
    timeline = api.get(f"/api/sessions/{session}", headers=bearer(user_token(customer))).json()["timeline"]
    assert timeline[-1]["event"] == "declined"


def test_a_mechanic_an_offer_does_not_name_cannot_decline_it(
    api: httpx.Client, customer: uuid.UUID, user_token: Token, make_mechanic: MakeMechanic,
) -> None:
    other = user_token(make_mechanic())
    session = start_free(api, user_token(customer))["sessionId"]
    r = api.post(f"/api/assignments/{offer_of(api, other, session)}/decline", headers=bearer(other))
    assert (r.status_code, r.json()["code"]) == (403, "NOT_PREFERRED_MECHANIC")


# --- hostile text, 5xx bodies, the credit balance ---------------------------------------------

@pytest.mark.parametrize("field", ["concern", "vehicle_make", "vehicle_model", "vehicle_vin", "plan"])
@pytest.mark.parametrize(("hostile", "plan"), [("\u0000", "free"), ("\ud800", "free"), ("\u0000", "standard")])
def test_a_nul_or_a_lone_surrogate_in_any_intake_text_is_refused_before_anything_is_written(
    api: httpx.Client, db: Db, customer: uuid.UUID, user_token: Token, field: str, hostile: str, plan: str,
) -> None:
    body = {"plan": plan, field: ("1HGCM82633A00435" if field == "vehicle_vin" else "brakes") + hostile}
    r = api.post("/api/intake/start", content=json.dumps(body),  # \u escapes, as a JavaScript client sends them
                 headers={**bearer(user_token(customer)), "Content-Type": "application/json"})

    assert (r.status_code, r.json()["code"]) == (422, "INVALID_INTAKE"), r.text
    assert db.execute("select count(*) as n from public.intakes where customer_user_id = %s",
                      (customer,)).fetchone() == {"n": 0}


def test_a_revoked_service_key_is_a_misconfiguration_whose_body_names_no_internal_detail(
    stack: StackInfo, customer: uuid.UUID, user_token: Token,
) -> None:
    forged = mint_key("another project's secret, at least thirty-two characters", "service_role", lifetime=3600)
    settings = api_settings(stack, supabase_service_role_key=forged)
    with running_api(settings) as base, httpx.Client(base_url=base, timeout=10) as client:
        r = client.post("/api/intake/start", json={"plan": "free"}, headers=bearer(user_token(customer)))

    assert r.status_code == 500
    assert r.json() == {"error": Misconfigured.message, "code": "SESSION_BACKEND_ERROR",
                        "requestId": r.headers["X-Request-ID"]}


@pytest.mark.parametrize(("code", "transient"),
                         [("401", False), ("403", False), ("404", False), ("503", True), (502, True),
                          ("40001", True), ("08006", True), ("42501", False), ("PGRST000", True),
                          ("PGRST301", False)])
def test_an_http_status_is_never_read_as_a_sqlstate_class(code: object, transient: bool) -> None:
    assert is_transient(code) is transient


def test_a_401_without_a_postgrest_body_is_ours_to_fix_not_a_503() -> None:
    assert isinstance(error_for(401, {}), Misconfigured)


def test_the_credit_balance_is_the_databases_sum_however_many_entries(
    api: httpx.Client, db: Db, customer: uuid.UUID, user_token: Token,
) -> None:
    db.execute("insert into public.credit_entries (customer_user_id, delta, reason)"
               " select %s, 1, 'grant' from generate_series(1, 1500)", (customer,))

    r = api.get("/api/credits", headers=bearer(user_token(customer)))

    assert (r.json()["balance"], len(r.json()["entries"])) == (1500, 20)
