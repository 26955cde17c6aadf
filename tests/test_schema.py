"""The schema's own guarantees: one editable source per function, RLS, grants and constraints."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import httpx
import psycopg
import pytest

from pysvc import migrate
from pysvc.enums import InboxStatus, RoutingType, SessionStatus, SessionType
from pysvc.local.stack import StackInfo

Db = psycopg.Connection[dict[str, Any]]
MakeIntake = Callable[..., uuid.UUID]
Token = Callable[[uuid.UUID], str]

RELEASE = "release it: copy its statements into a new migration sql/migrations/<YYYYMMDDHHMMSS>_<what>.sql"


def _source_texts() -> dict[str, str]:
    """Every editable SQL file: under sql/, outside migrations/ and local/."""
    return {
        str(path.relative_to(migrate.SQL_DIR.parent)): path.read_text()
        for path in sorted(migrate.SQL_DIR.rglob("*.sql"))
        if path.relative_to(migrate.SQL_DIR).parts[0] not in ("migrations", "local")
    }


def _sources() -> dict[str, list[migrate.FunctionStatement]]:
    return {path: migrate.function_statements(text) for path, text in _source_texts().items()}


def _released() -> dict[str, dict[str, tuple[str, str]]]:
    """Each function the migrations define: kind (create, comment) -> (newest migration, its statement)."""
    newest: dict[str, dict[str, tuple[str, str]]] = {}
    for migration in migrate.discover():
        for statement in migrate.function_statements(migration.path.read_text()):
            newest.setdefault(statement.name, {})[statement.kind] = (migration.path.name, statement.text)
    return {name: kinds for name, kinds in newest.items() if "create" in kinds}


def test_every_function_has_exactly_one_source() -> None:
    defined_in: dict[str, list[str]] = {}
    for path, statements in _sources().items():
        for statement in statements:
            if statement.kind == "create":
                defined_in.setdefault(statement.name, []).append(path)
    problems = []
    for name in _released():
        paths = defined_in.get(name, [])
        if not paths:
            problems.append(f"{name} has no source: create sql/functions/<domain>/{name.split('.')[1]}.sql "
                            "with its create and comment statements copied from the newest migration")
        elif len(paths) > 1:
            problems.append(f"{name} is defined by {len(paths)} sources ({', '.join(paths)}): keep one")
    assert not problems, "\n".join(problems)


def test_a_source_holds_one_function_and_its_comment_only() -> None:
    problems = []
    for path, text in _source_texts().items():
        statements = migrate.function_statements(text)
        kinds = sorted(s.kind for s in statements)
        if len({s.name for s in statements}) != 1 or kinds not in (["create"], ["comment", "create"]) \
                or len(migrate.split_statements(text)) != len(statements):
            problems.append(f"{path}: a source holds one function's create and comment statements, nothing else "
                            "(grants, revokes and drops stay in migrations)")
    assert not problems, "\n".join(problems)


def test_every_source_is_released() -> None:
    released = _released()
    unreleased = [f"{path}: no migration defines {s.name}: {RELEASE}"
                  for path, statements in _sources().items() for s in statements
                  if s.kind == "create" and s.name not in released]
    assert not unreleased, "\n".join(unreleased)


@pytest.mark.parametrize("kind", ["create", "comment"])
def test_the_newest_migration_carries_each_source_verbatim(kind: str) -> None:
    released = _released()
    problems = []
    for path, statements in _sources().items():
        for s in statements:
            if s.kind != kind or s.name not in released or kind not in released[s.name]:
                continue
            migration, text = released[s.name][kind]
            if text != s.text:
                problems.append(f"{path} and the newest migration with its {kind} statement ({migration}) differ: "
                                f"edit {path} (never a released migration), then {RELEASE}")
    assert not problems, "\n".join(problems)


def test_every_function_has_a_comment_saying_why() -> None:
    missing = [f"{name} has no comment: write `comment on function {name}(...) is '<why>';` in its source, "
               f"then {RELEASE}" for name, kinds in _released().items() if "comment" not in kinds]
    missing += [f"{path} has no comment statement: add the one its newest migration has"
                for path, statements in _sources().items()
                if statements and not any(s.kind == "comment" for s in statements)]
    assert not missing, "\n".join(missing)


def test_function_is_security_definer_with_an_empty_search_path(db: Db) -> None:
    row = db.execute(
        "select prosecdef, proconfig from pg_catalog.pg_proc"
        " where oid = 'public.create_session_record'::regproc",
    ).fetchone()
    assert row == {"prosecdef": True, "proconfig": ['search_path=""']}


def test_only_service_role_may_execute_the_function(db: Db) -> None:
    rows = db.execute(
        "select r.rolname, has_function_privilege(r.rolname, 'public.create_session_record'::regproc,"
        " 'execute') as can from pg_catalog.pg_roles r"
        " where r.rolname in ('anon', 'authenticated', 'service_role', 'authenticator')"
        " order by r.rolname",
    ).fetchall()
    assert {r["rolname"]: r["can"] for r in rows} == {
        "anon": False, "authenticated": False, "authenticator": False, "service_role": True,
    }


def test_every_public_table_has_row_level_security(db: Db) -> None:
    rows = db.execute(
        "select c.relname from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind = 'r' and not c.relrowsecurity",
    ).fetchall()
    assert rows == []


def _get(rest: httpx.Client, path: str, token: str) -> httpx.Response:
    return rest.get(path, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def session_of(
    rest: httpx.Client, service_key: str, make_intake: MakeIntake,
) -> Callable[[uuid.UUID], str]:
    def _create(customer: uuid.UUID) -> str:
        intake = make_intake(customer)
        r = rest.post(
            "/rpc/create_session_record",
            json={"customer_id": str(customer), "plan": "free", "intake_id": str(intake),
                  "payment_method": "free"},
            headers={"Authorization": f"Bearer {service_key}"},
        )
        assert r.status_code == 200, r.text
        return str(r.json()["session_id"])

    return _create


@pytest.mark.parametrize(
    "table", ["sessions", "intakes", "session_participants", "session_events", "credit_entries"],
)
def test_a_customer_reads_only_their_own_rows(
    rest: httpx.Client, db: Db, user_token: Token, make_user: Callable[[], uuid.UUID],
    session_of: Callable[[uuid.UUID], str], table: str,
) -> None:
    alice, bob = make_user(), make_user()
    for who in (alice, bob):
        session_of(who)
        db.execute(
            "insert into public.credit_entries (customer_user_id, delta, reason) values (%s, 1, 'grant')",
            (who,),
        )
    r = _get(rest, f"/{table}", user_token(alice))

    assert r.status_code == 200
    rows = r.json()
    assert rows, f"alice sees none of her own {table}"
    owner_column = {"session_participants": "user_id", "session_events": "user_id"}.get(table, "customer_user_id")
    assert {row[owner_column] for row in rows} == {str(alice)}


@pytest.mark.parametrize(
    "table", ["sessions", "intakes", "session_participants", "session_assignments", "session_events",
              "credit_entries", "mechanics", "mechanic_queue"],
)
def test_anon_sees_nothing(
    rest: httpx.Client, anon_key: str, customer: uuid.UUID, session_of: Callable[[uuid.UUID], str],
    table: str,
) -> None:
    session_of(customer)
    r = _get(rest, f"/{table}", anon_key)
    assert r.status_code in (200, 401)
    assert r.status_code == 401 or r.json() == []


def test_anon_reads_the_plan_catalog(rest: httpx.Client, anon_key: str) -> None:
    r = _get(rest, "/plans?select=code,price_cents&code=eq.standard", anon_key)
    assert r.json() == [{"code": "standard", "price_cents": 2999}]


@pytest.mark.parametrize(
    ("table", "row"),
    [
        ("sessions", {"type": "chat", "plan": "free"}),
        ("session_participants", {"role": "customer"}),
        ("session_assignments", {"session_type": "chat", "plan": "free"}),
        ("session_events", {"event_type": "created"}),
        ("credit_entries", {"delta": 100, "reason": "grant"}),
    ],
)
def test_customers_cannot_write_what_only_the_service_writes(
    rest: httpx.Client, db: Db, user_token: Token, customer: uuid.UUID, make_intake: MakeIntake,
    session_of: Callable[[uuid.UUID], str], table: str, row: dict[str, Any],
) -> None:
    session_id = session_of(customer)
    owner = {"customer_user_id": str(customer)} if table in ("sessions", "credit_entries") else {}
    if table == "sessions":
        db.execute("update public.sessions set status = 'completed' where id = %s", (session_id,))
        owner["intake_id"] = str(make_intake(customer))
    elif table == "session_participants":
        owner["user_id"] = str(customer)
    if table not in ("sessions", "credit_entries"):
        owner["session_id"] = session_id
    before = db.execute(f"select count(*) as n from public.{table}").fetchone()

    r = rest.post(f"/{table}", json={**row, **owner}, headers={"Authorization": f"Bearer {user_token(customer)}"})

    assert r.status_code in (401, 403), r.text
    assert db.execute(f"select count(*) as n from public.{table}").fetchone() == before


def _gateway(stack: StackInfo, anon_key: str, token: str) -> httpx.Client:
    """PostgREST as supabase-js in a browser reaches it: the gateway, the anon key and the user's token."""
    return httpx.Client(base_url=stack.supabase_url + "/rest/v1", timeout=30,
                        headers={"apikey": anon_key, "Authorization": f"Bearer {token}"})


def test_a_customers_direct_insert_of_an_intake_is_refused_and_writes_nothing(
    stack: StackInfo, db: Db, anon_key: str, user_token: Token, customer: uuid.UUID,
) -> None:
    with _gateway(stack, anon_key, user_token(customer)) as client:
        r = client.post("/intakes", json={"customer_user_id": str(customer), "plan": "free"})

    assert r.status_code in (401, 403), r.text
    assert db.execute("select count(*) as n from public.intakes where customer_user_id = %s",
                      (customer,)).fetchone() == {"n": 0}


def test_the_api_roles_may_write_no_table_directly(db: Db) -> None:
    writable = db.execute(
        "select c.relname, r.role, p.privilege from pg_catalog.pg_class c"
        " cross join (values ('anon'), ('authenticated')) r (role)"
        " cross join (values ('insert'), ('update'), ('delete'), ('truncate')) p (privilege)"
        " where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'v', 'p')"
        " and pg_catalog.has_table_privilege(r.role, c.oid, p.privilege)",
    ).fetchall()
    assert writable == []


def test_the_api_roles_may_execute_no_private_function_but_the_read_policys(db: Db) -> None:
    executable = db.execute(
        "select p.oid::regprocedure::text as function, r.role from pg_catalog.pg_proc p"
        " cross join (values ('anon'), ('authenticated')) r (role)"
        " where p.pronamespace = 'private'::regnamespace"
        " and pg_catalog.has_function_privilege(r.role, p.oid, 'execute')",
    ).fetchall()
    assert executable == [{"function": "private.in_my_queue(uuid)", "role": "authenticated"}]


def test_a_mechanics_direct_read_of_session_assignments_equals_their_queue(
    stack: StackInfo, rest: httpx.Client, anon_key: str, service_key: str, user_token: Token,
    make_user: Callable[[], uuid.UUID], make_intake: MakeIntake, make_mechanic: Callable[..., uuid.UUID],
) -> None:
    me, someone = make_mechanic(), make_mechanic()
    routings = [("broadcast", None), ("workshop_only", someone), ("workshop_only", me),
                ("priority_broadcast", someone), ("priority_broadcast", me), ("hybrid", None)]
    mine = set()
    for routing, preferred in routings:
        customer = make_user()
        r = rest.post("/rpc/create_session_record", headers={"Authorization": f"Bearer {service_key}"}, json={
            "customer_id": str(customer), "plan": "free", "intake_id": str(make_intake(customer)),
            "payment_method": "free", "routing_type": routing,
            "preferred_mechanic_id": str(preferred) if preferred else None,
        })
        assert r.status_code == 200, r.text
        mine.add(r.json()["session_id"])
    queue = rest.post("/rpc/mechanic_queue_for", json={"mechanic_id": str(me)},
                      headers={"Authorization": f"Bearer {service_key}"}).json()

    with _gateway(stack, anon_key, user_token(me)) as client:
        direct = client.get("/session_assignments", params={"select": "id,session_id"}).json()
        view = client.get("/mechanic_queue", params={"select": "assignment_id,session_id"}).json()

    listed = {q["assignment_id"] for q in queue if q["session_id"] in mine}
    assert len(listed) == 3  # broadcast and the two offers naming me; not hybrid, nor the others named
    assert {a["id"] for a in direct if a["session_id"] in mine} == listed
    assert {a["assignment_id"] for a in view if a["session_id"] in mine} == listed


def test_an_active_mechanic_sees_the_queue_newest_urgent_first(
    rest: httpx.Client, db: Db, user_token: Token, make_user: Callable[[], uuid.UUID],
    make_intake: MakeIntake, make_mechanic: Callable[..., uuid.UUID], service_key: str,
) -> None:
    mine = []
    for urgent in (False, True, False, True):
        customer = make_user()
        r = rest.post(
            "/rpc/create_session_record",
            json={"customer_id": str(customer), "plan": "free", "intake_id": str(make_intake(customer)),
                  "payment_method": "free", "urgent": urgent},
            headers={"Authorization": f"Bearer {service_key}"},
        )
        mine.append((r.json()["session_id"], urgent))
    mechanic = make_mechanic()

    r = _get(rest, "/mechanic_queue?select=session_id,urgent,session_type,plan,age", user_token(mechanic))

    assert r.status_code == 200
    queue = [row for row in r.json() if row["session_id"] in {s for s, _ in mine}]
    assert [row["session_id"] for row in queue] == [mine[3][0], mine[1][0], mine[2][0], mine[0][0]]
    assert {(row["session_type"], row["plan"]) for row in queue} == {("chat", "free")}


def test_customers_and_inactive_mechanics_do_not_see_the_queue(
    rest: httpx.Client, user_token: Token, customer: uuid.UUID, session_of: Callable[[uuid.UUID], str],
    make_mechanic: Callable[..., uuid.UUID],
) -> None:
    session_of(customer)
    retired = make_mechanic(active=False)
    assert _get(rest, "/mechanic_queue", user_token(customer)).json() == []
    assert _get(rest, "/mechanic_queue", user_token(retired)).json() == []


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("update public.sessions set status = 'paused' where id = %(s)s", "sessions_status_check"),
        ("update public.sessions set type = 'phone' where id = %(s)s", "sessions_type_check"),
        ("update public.session_assignments set status = 'lost' where session_id = %(s)s",
         "session_assignments_status_check"),
        ("update public.session_participants set role = 'boss' where session_id = %(s)s",
         "session_participants_role_check"),
        ("insert into public.session_events (session_id, event_type) values (%(s)s, 'exploded')",
         "session_events_event_type_check"),
        ("insert into public.plans (code, session_type, price_cents, is_free) values ('odd', 'chat', 5, true)",
         "plans_free_means_no_price"),
    ],
)
def test_enumerated_values_are_checked_by_the_database(
    db: Db, customer: uuid.UUID, session_of: Callable[[uuid.UUID], str], statement: str, constraint: str,
) -> None:
    session_id = session_of(customer)
    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        db.execute(statement, {"s": session_id})


@pytest.mark.parametrize(
    ("constraint", "enum"),
    [
        ("sessions_type_check", SessionType),
        ("sessions_status_check", SessionStatus),
        ("intakes_routing_type_check", RoutingType),
        ("stripe_events_status_check", InboxStatus),
    ],
)
def test_python_enums_list_exactly_what_the_database_allows(db: Db, constraint: str, enum: type[StrEnum]) -> None:
    row = db.execute(
        "select pg_catalog.pg_get_constraintdef(oid) as def from pg_catalog.pg_constraint"
        " where conname = %s and connamespace = 'public'::regnamespace", (constraint,),
    ).fetchone()
    assert row is not None, constraint
    assert set(re.findall(r"'([a-z_]+)'::text", row["def"])) == {member.value for member in enum}

