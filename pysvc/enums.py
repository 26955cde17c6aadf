"""The vocabulary shared by the SQL CHECKs, the RPC client and the HTTP models.

Each enum lists exactly the values its table's CHECK constraint allows (tests/test_schema.py
compares them with the database)."""

from __future__ import annotations

from enum import StrEnum


class SessionType(StrEnum):
    chat = "chat"
    video = "video"
    diagnostic = "diagnostic"


class SessionStatus(StrEnum):
    pending = "pending"
    waiting = "waiting"
    live = "live"
    completed = "completed"
    cancelled = "cancelled"
    expired = "expired"


class PaymentMethod(StrEnum):
    free = "free"
    stripe = "stripe"
    credits = "credits"


class RoutingType(StrEnum):
    broadcast = "broadcast"
    workshop_only = "workshop_only"
    hybrid = "hybrid"
    priority_broadcast = "priority_broadcast"


class InboxStatus(StrEnum):
    """`stripe_events.status`: what became of one delivered event."""

    received = "received"
    processed = "processed"
    ignored = "ignored"
    failed = "failed"
    refunded = "refunded"


PLAN_CODE = r"^[a-z0-9][a-z0-9-]{0,39}$"
CHECKOUT_ID = r"^cs_(test|live)_[A-Za-z0-9]{1,250}$"
