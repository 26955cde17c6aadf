"""Fixtures on the real stack: embedded PostgreSQL + PostgREST started in a temporary directory.

Nothing here is mocked. Tests are isolated by giving each its own customer (a fresh auth.users
row), so they never need truncation and can read whatever they wrote.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from pysvc.local.stack import Stack, StackInfo, mint_key
from pysvc.settings import Settings
from tests.stripe_stub import StripeStub
from tests.utils.app import api_settings, running_api
from tests.utils.stripe import WEBHOOK_SECRET, stripe_stub_server


@pytest.fixture(scope="session")
def stack_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="pysvc-test-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(stack_home: Path) -> Iterator[StackInfo]:
    local = Stack(stack_home, db_port=0, rest_port=0, say=lambda _: None)
    info = local.start()
    yield info
    local.stop()


@pytest.fixture(scope="session")
def db(stack: StackInfo) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(stack.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="session")
def mint(stack: StackInfo) -> Callable[..., str]:
    """mint(role, **claims): a JWT signed with the stack's secret, as Supabase would issue it."""

    def _mint(role: str, **claims: Any) -> str:
        return mint_key(stack.jwt_secret, role, lifetime=3600, **claims)

    return _mint


@pytest.fixture(scope="session")
def service_key(stack: StackInfo) -> str:
    return stack.service_role_key


@pytest.fixture(scope="session")
def anon_key(stack: StackInfo) -> str:
    return stack.anon_key


@pytest.fixture
def user_token(mint: Callable[..., str]) -> Callable[[uuid.UUID], str]:
    """An `authenticated` access token for a user, as Supabase Auth issues it."""

    def _token(user_id: uuid.UUID) -> str:
        return mint("authenticated", sub=str(user_id), aud="authenticated")

    return _token


@pytest.fixture(scope="session")
def rest(stack: StackInfo) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.rest_url, timeout=30) as client:
        yield client


@pytest.fixture
def rpc(rest: httpx.Client, service_key: str) -> Callable[..., httpx.Response]:
    """POST /rpc/create_session_record over real HTTP, as service_role unless told otherwise."""

    def _rpc(payload: dict[str, Any], *, token: str | None = None) -> httpx.Response:
        return rest.post(
            "/rpc/create_session_record",
            json=payload,
            headers={"Authorization": f"Bearer {token or service_key}"},
        )

    return _rpc


@pytest.fixture
def make_user(db: psycopg.Connection[dict[str, Any]]) -> Callable[[], uuid.UUID]:
    def _make() -> uuid.UUID:
        user_id = uuid.uuid4()
        db.execute(
            "insert into auth.users (id, email) values (%s, %s)",
            (user_id, f"{user_id.hex[:12]}@example.com"),
        )
        return user_id

    return _make


@pytest.fixture
def customer(make_user: Callable[[], uuid.UUID]) -> uuid.UUID:
    return make_user()


@pytest.fixture
def make_intake(db: psycopg.Connection[dict[str, Any]]) -> Callable[..., uuid.UUID]:
    def _make(customer_id: uuid.UUID, plan: str = "free", **fields: Any) -> uuid.UUID:
        columns = ["customer_user_id", "plan", *fields]
        row = db.execute(
            f"insert into public.intakes ({', '.join(columns)})"
            f" values ({', '.join(['%s'] * len(columns))}) returning id",
            (customer_id, plan, *fields.values()),
        ).fetchone()
        assert row is not None
        return uuid.UUID(str(row["id"]))

    return _make


@pytest.fixture
def make_mechanic(
    db: psycopg.Connection[dict[str, Any]], make_user: Callable[[], uuid.UUID],
) -> Callable[..., uuid.UUID]:
    def _make(*, active: bool = True, is_specialist: bool = False) -> uuid.UUID:
        user_id = make_user()
        db.execute(
            "insert into public.mechanics (user_id, display_name, active, is_specialist)"
            " values (%s, %s, %s, %s)",
            (user_id, "Mechanic " + user_id.hex[:6], active, is_specialist),
        )
        return user_id

    return _make


@pytest.fixture
def counts(db: psycopg.Connection[dict[str, Any]]) -> Callable[[uuid.UUID], dict[str, int]]:
    """Rows a customer owns in each table create_session_record writes."""

    def _counts(customer_id: uuid.UUID) -> dict[str, int]:
        row = db.execute(
            """
            select
              (select count(*) from public.sessions where customer_user_id = %(c)s) as sessions,
              (select count(*) from public.session_participants where user_id = %(c)s) as participants,
              (select count(*) from public.session_assignments a join public.sessions s
                 on s.id = a.session_id where s.customer_user_id = %(c)s) as assignments,
              (select count(*) from public.session_events where user_id = %(c)s) as events,
              (select count(*) from public.credit_entries
                 where customer_user_id = %(c)s and reason = 'session') as debits
            """,
            {"c": customer_id},
        ).fetchone()
        assert row is not None
        return {k: int(v) for k, v in row.items()}

    return _counts


@pytest.fixture(scope="session")
def stripe_stub() -> Iterator[StripeStub]:
    with stripe_stub_server() as stub:
        yield stub


@pytest.fixture(scope="session")
def stripe_settings(stack: StackInfo, stripe_stub: StripeStub) -> Settings:
    return api_settings(
        stack,
        stripe_secret_key="sk_test_stub",
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe_stub.base_url,
        public_base_url="http://shop.example",
    )


@pytest.fixture(scope="session")
def api(stripe_settings: Settings) -> Iterator[httpx.Client]:
    with running_api(stripe_settings) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def api_without_stripe(stack: StackInfo) -> Iterator[httpx.Client]:
    with running_api(api_settings(stack)) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


@pytest.fixture
def paid_checkout(
    api: httpx.Client, stripe_stub: StripeStub, customer: uuid.UUID, user_token: Callable[[uuid.UUID], str],
) -> Callable[..., dict[str, Any]]:
    """Intake → waiver → Checkout Session on the stub, then paid as Stripe would (unless pay=False)."""

    def _checkout(plan: str = "standard", *, pay: bool = True, **intake: Any) -> dict[str, Any]:
        me = {"Authorization": f"Bearer {user_token(customer)}"}
        started = api.post("/api/intake/start", json={"plan": plan, **intake}, headers=me)
        assert started.status_code == 200, started.text
        intake_id = started.json()["intakeId"]
        waiver = api.post(f"/api/intake/{intake_id}/waiver", headers=me)
        assert waiver.status_code == 200, waiver.text
        session_id = waiver.json()["checkoutUrl"].rsplit("/", 1)[1]
        if not pay:
            return stripe_stub.sessions[session_id]
        return stripe_stub.pay(session_id)

    return _checkout
