"""Operators' tools for the paid path: reconcile Stripe's completed checkouts with the sessions they
bought, and replay events from the inbox. Both run the same idempotent code as the webhook, so
they are safe to run at any time, while webhooks flow, and more than once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pysvc.deps import Services
from pysvc.enums import InboxStatus
from pysvc.errors import ApiError
from pysvc.fulfilment import PENDING
from pysvc.postgrest import guard


@dataclass(frozen=True)
class Line:
    """One row of an operator's report: what, what it came to, and whether a person must look."""

    subject: str
    result: str
    detail: str = ""
    needs_a_person: bool = False


async def reconcile(svc: Services, since: timedelta) -> list[Line]:
    """Every checkout Stripe completed in the window, through the same fulfilment as the webhook."""
    lines = []
    async for checkout in svc.stripe.completed_checkouts(int(time.time() - since.total_seconds())):
        try:
            outcome = await svc.fulfilment.fulfil(checkout)
        except ApiError as exc:
            lines.append(Line(checkout["id"], "failed", f"{exc.code}: {exc.detail}", needs_a_person=True))
            continue
        if outcome.result is not None:
            result = "fulfilled now" if outcome.result.created else "already fulfilled"
            lines.append(Line(checkout["id"], result, f"session {outcome.result.session_id}"))
        elif outcome.status == PENDING:
            lines.append(Line(checkout["id"], "pending", "payment not settled yet"))
        elif outcome.detail.get("reason") == "PAYMENT_NOT_FOUND":
            lines.append(Line(checkout["id"], "not ours", "this service did not open that Checkout"))
        elif outcome.status == InboxStatus.refunded:
            lines.append(Line(checkout["id"], "refunded", str(outcome.detail.get("reason", ""))))
        else:
            lines.append(Line(checkout["id"], "failed", str(outcome.detail.get("reason", "")), needs_a_person=True))
    return lines


async def audit(svc: Services, since: timedelta) -> list[Line]:
    """The money rule, checked from both sides: every Checkout Stripe lists as paid in the window has a
    payment here that knows it took money, and every payment (public.payment_audit) ended as exactly one
    session or one full refund. Each line is a violation, with what to do."""
    start = datetime.now(UTC) - since
    lines = []
    async for checkout in svc.stripe.completed_checkouts(int(start.timestamp())):
        if checkout.get("payment_status") != "paid":
            continue
        payment = await svc.store.payment_of_checkout(str(checkout["id"]))
        if payment is None or payment.status in ("creating", "open", "processing", "expired", "payment_failed"):
            known = "not recorded here" if payment is None else f"recorded as {payment.status}"
            lines.append(Line(str(checkout["id"]), "paid at Stripe", f"{known}: run pysvc stripe reconcile",
                              needs_a_person=True))
    problems: list[dict[str, Any]] = await svc.rpc.call("payment_audit", {"since": start.isoformat()})
    for problem in problems:
        subject = problem.get("checkout_session_id") or problem.get("payment_id") or problem.get("session_id")
        lines.append(Line(str(subject), str(problem.get("status") or "no payment"),
                          f"{problem['problem']}: {problem['action']}", needs_a_person=True))
    return lines


async def refund(svc: Services, payment_id: str, reason: str | None) -> Line:
    """An operator's full refund of a payment (a new request with its own key), sent at once."""
    row: dict[str, Any] = await svc.rpc.call("refund_payment", {"payment_id": payment_id, "reason": reason})
    outcome = await svc.outbox.send_one(int(row["id"])) if row.get("status") == "pending" else row.get("status")
    return Line(payment_id, f"refund {outcome or 'queued'}", f"outbox {row['id']} ({row['idempotency_key']})",
                needs_a_person=outcome == "failed")


async def replay(svc: Services, event_ids: list[str], *, failed: bool = False,
                 stuck_after: timedelta | None = None) -> list[Line]:
    """Run stored events through the webhook's handler again: the ones named, every failed one,
    and/or every one left `received` for longer than `stuck_after`."""
    query = svc.store.client.from_("stripe_events").select("id,payload").order("received_at")
    filters = []
    if event_ids:
        filters.append(f"id.in.({','.join(event_ids)})")
    if failed:
        filters.append("status.eq.failed")
    if stuck_after is not None:
        before = (datetime.now(UTC) - stuck_after).isoformat()
        filters.append(f"and(status.eq.received,received_at.lt.{before})")
    if not filters:
        return []
    rows: list[Any] = (await guard(query.or_(",".join(filters)).execute())).data
    found = {row["id"] for row in rows}
    lines = [Line(event_id, "not found", "no such event in the inbox", needs_a_person=True)
             for event_id in event_ids if event_id not in found]
    for row in rows:
        try:
            ack = await svc.webhook.handle(row["payload"], replay=True)
        except ApiError as exc:
            lines.append(Line(row["id"], "failed", f"{exc.code}: {exc.detail}", needs_a_person=True))
            continue
        detail = f"session {ack.session_id}" if ack.session_id else ""
        lines.append(Line(row["id"], ack.status.value, detail, needs_a_person=ack.status is InboxStatus.failed))
    return lines


def table(lines: list[Line]) -> str:
    if not lines:
        return "nothing to do"
    width = max(len(line.subject) for line in lines)
    return "\n".join(f"{line.subject:<{width}}  {line.result:<17}  {line.detail}".rstrip() for line in lines)
