"""Minimal pages where the API sends browsers (the landing page's redirects), so that `pysvc dev`
works end to end. A real deployment sets APP_BASE_URL to its own front end instead."""

from __future__ import annotations

from html import escape
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


def _page(title: str, text: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1><p>{escape(text)}</p>")


@router.get("/session/{session_id}/waiting-room")
async def waiting_room(session_id: UUID) -> HTMLResponse:
    return _page("Waiting for a mechanic", f"Session {session_id} is paid for; a mechanic will join shortly.")


@router.get("/intake/waiver")
async def waiver(plan: str = "", intake_id: str = "") -> HTMLResponse:
    return _page("Waiver", f"Sign the waiver for intake {intake_id} ({plan}): POST /api/intake/{intake_id}/waiver.")


@router.get("/checkout/processing")
async def processing() -> HTMLResponse:
    return _page("Payment processing", "Your payment has not settled yet; your session starts as soon as it does.")


@router.get("/checkout/{outcome}")
async def ended(outcome: str, reason: str = "") -> HTMLResponse:
    if outcome == "refunded":
        return _page("Payment refunded", f"This payment could not be used ({reason}) and was refunded in full.")
    return _page("Payment not used", f"This payment could not be used ({reason}).")
