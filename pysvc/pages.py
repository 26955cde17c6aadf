"""Where the app's pages are: every redirect and page URL the API hands out is built here."""

from __future__ import annotations

from urllib.parse import quote
from uuid import UUID


def waiver(plan: str, intake_id: UUID, session_id: UUID | None = None) -> str:
    """The waiver page; a free intake's session is already named in it."""
    session = f"session={session_id}&" if session_id else ""
    return f"/intake/waiver?{session}plan={plan}&intake_id={intake_id}"


def waiting_room(session_id: UUID) -> str:
    return f"/session/{session_id}/waiting-room"


def intake_waiting_room(intake_id: UUID) -> str:
    return f"/intake/{intake_id}/waiting-room"


def checkout_success(public_base_url: str) -> str:
    """Stripe fills in {CHECKOUT_SESSION_ID}."""
    return f"{public_base_url}/api/checkout/success?session_id={{CHECKOUT_SESSION_ID}}"


def checkout_processing() -> str:
    return "/checkout/processing"


def checkout_ended(refunded: bool, reason: str) -> str:
    """A paid checkout that could not become a session: refunded, or failed (with why)."""
    return f"/checkout/{'refunded' if refunded else 'failed'}?reason={quote(reason)}"
