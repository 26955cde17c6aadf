"""Session lifecycle helpers: calling the SQL functions over PostgREST, reading a session's
history, and the invariants every transition must leave intact."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from typing import Any

import httpx
import psycopg

Db = psycopg.Connection[dict[str, Any]]

# The status each status-changing event leaves a session in ('refunded' changes nothing).
STATUS_AFTER = {
    "created": "pending", "assigned": "waiting", "started": "live", "ended": "completed",
    "cancelled": "cancelled", "expired": "expired", "released": "pending",
}
ONCE_AT_MOST = ("started", "ended", "cancelled", "expired", "refunded")


def call_rpc(rest: httpx.Client, token: str, function: str, **args: Any) -> httpx.Response:
    body = {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in args.items()}
    return rest.post(f"/rpc/{function}", json=body, headers={"Authorization": f"Bearer {token}"})


def refusal(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["code"]


def details(r: httpx.Response) -> Any:
    return json.loads(r.json()["details"])


def event_types(db: Db, session_id: str) -> list[str]:
    rows = db.execute(
        "select event_type from public.session_events where session_id = %s order by id", (session_id,),
    ).fetchall()
    return [r["event_type"] for r in rows]


def assert_invariants(db: Db, session_id: str) -> None:
    """What must hold for a session after any transition, whatever the path that led there."""
    session = db.execute("select * from public.sessions where id = %s", (session_id,)).fetchone()
    assert session is not None
    status = session["status"]
    events = event_types(db, session_id)
    assignments = db.execute(
        "select status, mechanic_id from public.session_assignments where session_id = %s", (session_id,),
    ).fetchall()
    participants = {
        (r["user_id"], r["role"])
        for r in db.execute(
            "select user_id, role from public.session_participants where session_id = %s", (session_id,),
        ).fetchall()
    }

    assert (session["customer_user_id"], "customer") in participants
    assert events[0] == "created"
    assert all(n == 1 for e, n in Counter(events).items() if e in ONCE_AT_MOST), events
    assert STATUS_AFTER[[e for e in events if e in STATUS_AFTER][-1]] == status, (status, events)

    by_status = Counter(a["status"] for a in assignments)
    assert assignments
    assert by_status["queued"] + by_status["offered"] + by_status["accepted"] <= 1
    assert by_status["queued"] == (1 if status == "pending" else 0), (status, by_status)
    mechanics = {user for user, role in participants if role == "mechanic"}
    if status in ("waiting", "live", "completed"):
        accepted = [a["mechanic_id"] for a in assignments if a["status"] == "accepted"]
        assert len(accepted) == 1
        assert mechanics == set(accepted)
    if status == "pending":
        assert mechanics == set()

    active = db.execute(
        "select count(*) as n from public.sessions where customer_user_id = %s and is_active",
        (session["customer_user_id"],),
    ).fetchone()
    assert active is not None and active["n"] <= 1
    _assert_refunded_iff_ended_unstarted(db, session, events)


def _assert_refunded_iff_ended_unstarted(db: Db, session: dict[str, Any], events: list[str]) -> None:
    ended_unstarted = session["status"] in ("cancelled", "expired")
    method = session["payment_method"]
    outbox = db.execute(
        "select count(*) as n from public.stripe_outbox where session_id = %s and kind = 'refund'", (session["id"],),
    ).fetchone()
    credited = db.execute(
        "select coalesce(sum(delta), 0) as back, count(*) as n from public.credit_entries"
        " where session_id = %s and reason = 'refund'",
        (session["id"],),
    ).fetchone()
    debit = db.execute(
        "select coalesce(-sum(delta), 0) as cost from public.credit_entries"
        " where session_id = %s and reason = 'session'",
        (session["id"],),
    ).fetchone()
    assert outbox is not None and credited is not None and debit is not None
    paid = method in ("stripe", "credits")
    assert events.count("refunded") == (1 if ended_unstarted and paid else 0), events
    assert outbox["n"] == (1 if ended_unstarted and method == "stripe" else 0)
    assert credited["n"] == (1 if ended_unstarted and method == "credits" else 0)
    if credited["n"]:
        assert credited["back"] == debit["cost"]


def pg_cron_command() -> str:
    """The SQL pg_cron's `pysvc-expire-sessions` job runs, as the newest migration scheduling it says."""
    from pysvc import migrate

    found = [m.group(1) for migration in migrate.discover()
             for m in re.finditer(r"cron\.schedule\('pysvc-expire-sessions', '[^']*', '([^']*)'\)",
                                  migration.path.read_text())]
    assert found, "no migration schedules pysvc-expire-sessions"
    return found[-1]
