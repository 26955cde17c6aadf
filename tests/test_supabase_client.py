"""A Python backend on Supabase already holds a `supabase` client: it creates sessions through it,
against the local stack's Supabase-like gateway (SUPABASE_URL, PostgREST under /rest/v1)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from supabase import acreate_client, create_client

from pysvc.factory import CreateSessionParams, CreateSessionResult, SessionFactory
from pysvc.local.stack import StackInfo


def free_session(customer: uuid.UUID) -> CreateSessionParams:
    return CreateSessionParams.parse({"customer_id": str(customer), "plan": "free", "intake_id": str(uuid.uuid4()),
                                      "payment_method": "free", "intake": {"concern": "brakes"}})


def test_an_async_supabase_client_creates_a_session(stack: StackInfo, make_user: Callable[[], uuid.UUID]) -> None:
    customer = make_user()

    async def backend() -> CreateSessionResult:
        supabase = await acreate_client(stack.supabase_url, stack.service_role_key)
        factory = SessionFactory.from_supabase(supabase)
        return await factory.create_session_record(free_session(customer))

    result = asyncio.run(backend())

    assert result.created is True


def test_a_sync_supabase_client_creates_a_session(stack: StackInfo, make_user: Callable[[], uuid.UUID]) -> None:
    customer = make_user()
    factory = SessionFactory.from_supabase(create_client(stack.supabase_url, stack.service_role_key))

    result = asyncio.run(factory.create_session_record(free_session(customer)))

    assert result.created is True


def test_the_new_secret_key_format_works_too(stack: StackInfo, make_user: Callable[[], uuid.UUID]) -> None:
    customer = make_user()

    async def backend() -> CreateSessionResult:
        supabase = await acreate_client(stack.supabase_url, stack.secret_key)
        return await SessionFactory.from_supabase(supabase).create_session_record(free_session(customer))

    assert asyncio.run(backend()).created is True
