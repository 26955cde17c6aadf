"""Payments as the waiver makes them: public.open_checkout, then Stripe's answer recorded."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

Db = psycopg.Connection[dict[str, Any]]


def open_payment(db: Db, customer: uuid.UUID | str, intake: uuid.UUID | str, checkout: str | None = None) -> str:
    """An open Checkout for the intake, recorded as the waiver records it; its cs_ id."""
    payment = db.execute(
        "select public.open_checkout(%s, %s, 'https://app.example/success', 'https://app.example/cancel') as p",
        (customer, intake),
    ).fetchone()
    assert payment is not None
    checkout = checkout or f"cs_test_{uuid.uuid4().hex}"
    db.execute(
        "select public.record_checkout_opened(%s, %s, %s, now() + interval '30 minutes')",
        (payment["p"]["id"], checkout, f"https://checkout.stripe.com/c/pay/{checkout}"),
    )
    return checkout


def payment(db: Db, checkout: str) -> dict[str, Any]:
    row = db.execute("select * from public.payments where checkout_session_id = %s", (checkout,)).fetchone()
    assert row is not None, f"no payment for {checkout}"
    return row
