"""A local stand-in for Stripe's HTTP API (only that: webhooks are signed for real by the tests).

It speaks Stripe's JSON for the pinned API version (`stripe.api_version`), starting from Stripe's own
fixtures (tests/fixtures/stripe), and is as strict as Stripe where money depends on it:

- Idempotency-Key, per account: the same key and parameters replay the stored status and body; other
  parameters or another endpoint → 400 `idempotency_error`; a key still in flight → 409
  `idempotency_key_in_use`. Parameters are compared parsed (`metadata[x]`, `line_items[0][..]`, `expand[]`).
- Checkout Sessions (create, retrieve, list, expire): an open session has `payment_intent: null`; paying it
  (`pay`) creates the PaymentIntent and its Charge.
- Refunds (create, retrieve, list) against what remains on the charge; Charges never carry `refunds`
  unless expanded (API 2022-11-15 onwards); PaymentIntents carry `latest_charge`.
- Faults a test injects: latency (`delay`), a reply lost after the work was done (`drop_reply_once`),
  429s (`rate_limit`), canned answers by path (`failures`).

Every request is recorded (`calls`, `calls_to`); every event Stripe would send is kept in `events` and
returned by the helper that caused it, for the test to deliver signed.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import stripe

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"
Obj = dict[str, Any]

RESOURCE_MISSING_DOC = "https://stripe.com/docs/error-codes/resource-missing"
REFUND_EVENTS_ON_FAILURE = ("refund.failed", "refund.updated", "charge.refund.updated")


def fixture(name: str) -> Obj:
    data: Obj = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


# --- Stripe's form encoding ----------------------------------------------------------------------

def parse_form(pairs: list[tuple[str, str]]) -> Obj:
    """`a[b][0][c]=v`, `expand[]=x` … into nested dicts and lists, as Stripe reads them."""
    root: Obj = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head, *re.findall(r"([^\[\]]*)\]", "[" + rest)] if rest else [head]
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # `x[]`: append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    parsed: Obj = _listify(root)
    return parsed


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def _expands(form: Obj) -> list[str]:
    raw = form.get("expand", [])
    return list(raw.values()) if isinstance(raw, dict) else list(raw) if isinstance(raw, list) else [raw]


# --- Stripe's error bodies -----------------------------------------------------------------------

class StripeFailure(Exception):
    """An error answer; `stored` says whether the idempotency layer keeps it (Stripe keeps the result
    once the endpoint has started executing, not a refusal of the parameters themselves)."""

    def __init__(self, status: int, error: Obj, *, stored: bool = True) -> None:
        super().__init__(error.get("message"))
        self.status, self.error, self.stored = status, error, stored


def invalid(message: str, *, status: int = 400, stored: bool = True, **fields: Any) -> StripeFailure:
    return StripeFailure(status, {**fields, "message": message, "type": "invalid_request_error"}, stored=stored)


def no_such(kind: str, object_id: str, param: str, *, status: int = 404) -> StripeFailure:
    return invalid(f"No such {kind}: '{object_id}'", status=status, code="resource_missing",
                   doc_url=RESOURCE_MISSING_DOC, param=param)


def missing_param(param: str) -> StripeFailure:
    return invalid(f"Missing required param: {param}.", stored=False, code="parameter_missing",
                   doc_url="https://stripe.com/docs/error-codes/parameter-missing", param=param)


def _money(amount: int, currency: str) -> str:
    symbol = {"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$"}.get(currency)
    value = f"{amount / 100:.2f}"
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"


def _int(form: Obj, param: str) -> int:
    try:
        value = int(form[param])
    except (TypeError, ValueError):
        raise invalid("Invalid integer: " + str(form[param]), stored=False, code="parameter_invalid_integer",
                      param=param) from None
    return value


# --- requests, records ---------------------------------------------------------------------------

@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]  # flat, as sent: `metadata[intake_id]`, `line_items[0][price_data][currency]`
    idempotency_key: str | None
    form: Obj = field(default_factory=dict)  # parsed the way Stripe parses it
    account: str = ""


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection instead of answering


@dataclass
class _Idempotent:
    method: str
    path: str
    form: Obj
    reply: Reply | None = None  # None while the first request is in flight


class CheckoutSession(dict[str, Any]):
    """A stored checkout.session. Older tests mark one paid by editing it (`update(payment_status=
    "paid")`); that is taken as the customer paying, so the PaymentIntent and Charge exist as at Stripe."""

    def __init__(self, stub: StripeStub, data: Obj) -> None:
        super().__init__(data)
        self._stub = stub

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._stub._paid_by_edit(self)

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._stub._paid_by_edit(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Obj:
        return copy.deepcopy(dict(self), memo)


@dataclass
class StripeStub:
    calls: list[Call] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_intents: dict[str, Obj] = field(default_factory=dict)
    charges: dict[str, Obj] = field(default_factory=dict)
    refunds: dict[str, Obj] = field(default_factory=dict)
    events: list[Obj] = field(default_factory=list)  # every event Stripe would have sent, oldest first
    failures: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # by path, until removed
    refund_mode: str = "succeeded"  # or "pending": refunds are created pending, as for some methods
    lock: threading.RLock = field(default_factory=threading.RLock)
    base_url: str = ""
    idempotency: dict[tuple[str, str], _Idempotent] = field(default_factory=dict)  # (account, key)
    delays: dict[str, float] = field(default_factory=dict)
    rate_limits: dict[str, int] = field(default_factory=dict)
    drops: set[str] = field(default_factory=set)
    intent_data: dict[str, Obj] = field(default_factory=dict)  # payment_intent_data by checkout
    _about: dict[str, str] = field(default_factory=dict)  # event id → the object it is about

    # --- test controls ---------------------------------------------------------------------------

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    def delay(self, path_prefix: str, seconds: float) -> None:
        """Requests whose path starts with `path_prefix` take `seconds` (0 removes it); an idempotent
        request is in flight meanwhile."""
        with self.lock:
            if seconds > 0:
                self.delays[path_prefix] = seconds
            else:
                self.delays.pop(path_prefix, None)

    def drop_reply_once(self, path: str) -> None:
        """The next request to `path` is done and stored (idempotency record kept) but the connection
        is closed without an answer: the client sees a connection error."""
        with self.lock:
            self.drops.add(path)

    def rate_limit(self, path_prefix: str, n: int) -> None:
        """The next `n` requests whose path starts with `path_prefix` are answered 429 `rate_limit`."""
        with self.lock:
            self.rate_limits[path_prefix] = n

    def checkout_session(self, **fields: Any) -> dict[str, Any]:
        """A checkout.session as Stripe would return or send it, stored at the stub. Open and unpaid by
        default (`payment_intent: null`); one given `payment_status="paid"` has its PaymentIntent and Charge."""
        with self.lock:
            session = fixture("checkout_session")
            checkout_id = fields.get("id") or f"cs_test_{uuid.uuid4().hex}"
            session.update({
                "id": checkout_id, "payment_intent": None, "status": "open", "payment_status": "unpaid",
                "created": int(time.time()), "expires_at": int(time.time()) + 86400,
                "url": f"https://checkout.stripe.com/c/pay/{checkout_id}",
            })
            stored = CheckoutSession(self, {})
            dict.update(stored, session)
            stored.update(fields)  # paid given here → paid now
            self.sessions[checkout_id] = stored
            return stored

    def pay(self, checkout_id: str, async_payment: bool = False) -> Obj:
        """The customer pays the open checkout: status complete, a PaymentIntent and a Charge. With an
        async method the session stays `unpaid` (PaymentIntent `processing`) until `settle_async`.
        Returns the session for `checkout.session.completed`."""
        with self.lock:
            session = self._open_session(checkout_id)
            self._charge(session, async_payment=async_payment)
            return self._object_of(self._emit("checkout.session.completed", session))

    def settle_async(self, checkout_id: str, succeeded: bool = True) -> Obj:
        """The async payment of a completed checkout succeeds or fails. Returns the session for
        `checkout.session.async_payment_succeeded` / `_failed`."""
        with self.lock:
            session = self.sessions[checkout_id]
            intent = self.payment_intents[session["payment_intent"]]
            charge = self.charges[intent["latest_charge"]]
            if intent["status"] != "processing":
                raise ValueError(f"{intent['id']} is {intent['status']}, not processing")
            if succeeded:
                intent.update(status="succeeded", amount_received=intent["amount"])
                charge.update(status="succeeded", paid=True, captured=True, amount_captured=charge["amount"])
                dict.__setitem__(session, "payment_status", "paid")
                return self._object_of(self._emit("checkout.session.async_payment_succeeded", session))
            intent.update(status="requires_payment_method", last_payment_error={
                "code": "payment_method_provider_decline", "type": "card_error"})
            charge.update(status="failed", paid=False, failure_code="payment_method_provider_decline",
                          failure_message="The payment was declined.")
            return self._object_of(self._emit("checkout.session.async_payment_failed", session))

    def expire(self, checkout_id: str) -> Obj:
        """Stripe's own timer closes the open checkout. Returns it for `checkout.session.expired`."""
        with self.lock:
            session = self._open_session(checkout_id)
            dict.update(session, status="expired", url=None)
            return self._object_of(self._emit("checkout.session.expired", session))

    def dashboard_refund(self, payment: str, amount: int | None = None) -> list[Obj]:
        """A refund made outside the service (dashboard) of a PaymentIntent or Charge; `amount` defaults to
        what remains, `refund_mode` applies. Returns the events Stripe sends: `refund.created`, `charge.refunded`."""
        with self.lock:
            form: Obj = {"charge" if payment.startswith("ch_") else "payment_intent": payment}
            if amount is not None:
                form["amount"] = str(amount)
            refund = self._create_refund(form, request={"id": f"req_{uuid.uuid4().hex[:14]}", "idempotency_key": None})
            return self._events_of(refund["id"])

    def fail_refund(self, refund_id: str, reason: str = "insufficient_funds") -> list[Obj]:
        """The refund fails after it was created: status `failed` with `failure_reason`, and the charge's
        `amount_refunded` goes back down. Returns `refund.failed`, `refund.updated`, `charge.refund.updated`."""
        with self.lock:
            refund = self.refunds[refund_id]
            if refund["status"] not in ("pending", "succeeded"):
                raise ValueError(f"{refund_id} is {refund['status']}")
            previous = {"status": refund["status"], "failure_reason": None, "failure_balance_transaction": None}
            refund.update(status="failed", failure_reason=reason, failure_balance_transaction=_id("txn"))
            charge = self.charges[refund["charge"]]
            self._recount(charge)
            return [self._emit(t, refund, previous_attributes=previous) for t in REFUND_EVENTS_ON_FAILURE]

    def settle_refund(self, refund_id: str) -> list[Obj]:
        """A pending refund succeeds. Returns `refund.updated`, `charge.refund.updated`."""
        with self.lock:
            refund = self.refunds[refund_id]
            if refund["status"] != "pending":
                raise ValueError(f"{refund_id} is {refund['status']}")
            refund.update(status="succeeded", balance_transaction=_id("txn"))
            previous = {"status": "pending", "balance_transaction": None}
            return [self._emit(t, refund, previous_attributes=previous)
                    for t in ("refund.updated", "charge.refund.updated")]

    def charge_view(self, charge_id: str, *, expand_refunds: bool = False) -> Obj:
        """The charge as the API returns it (no `refunds` unless expanded)."""
        with self.lock:
            return self._charge_view(self.charges[charge_id], expand_refunds)

    # --- HTTP ------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, pairs: list[tuple[str, str]], headers: dict[str, str]) -> Reply:
        key = headers.get("idempotency-key")
        account = headers.get("stripe-account") or _api_key(headers.get("authorization", ""))
        form = parse_form(pairs)
        with self.lock:
            self.calls.append(Call(method, path, dict(pairs), key, form, account))
            if not account:
                return _reply(StripeFailure(401, {"type": "invalid_request_error", "message": (
                    "You did not provide an API key. You need to provide your API key in the Authorization header, "
                    "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                    "https://stripe.com/docs/api#authentication for details, or we can help at "
                    "https://support.stripe.com/.")}))
            if path in self.failures:  # an answer before any endpoint ran: never stored
                status, payload = self.failures[path]
                return Reply(status, json.dumps(payload).encode())
            limited = next((p for p, n in self.rate_limits.items() if path.startswith(p) and n > 0), None)
            if limited is not None:
                self.rate_limits[limited] -= 1
                return _reply(invalid(
                    "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                    status=429, code="rate_limit", doc_url="https://stripe.com/docs/error-codes/rate-limit"))
            record: _Idempotent | None = None
            if key and method == "POST":  # keys on GET and DELETE have no effect at Stripe
                found = self.idempotency.get((account, key))
                if found is not None:
                    return self._replay(found, method, path, form, key)
                record = self.idempotency[(account, key)] = _Idempotent(method, path, form)
            pause = max((s for p, s in self.delays.items() if path.startswith(p)), default=0.0)
        if pause:
            time.sleep(pause)
        with self.lock:
            try:
                status, payload = self._answer(method, path, form, key)
                reply = Reply(status, json.dumps(payload).encode())
            except StripeFailure as exc:
                reply = _reply(exc)
                if record is not None and not exc.stored:
                    del self.idempotency[(account, key or "")]
                    record = None
            except Exception as exc:  # a request the stub cannot read: say so, never hang the key
                reply = _reply(StripeFailure(500, {"type": "api_error", "message": f"stripe stub: {exc!r}"}))
                if record is not None:
                    del self.idempotency[(account, key or "")]
                    record = None
            if record is not None:
                record.reply = reply
            reply.headers.update({"Idempotency-Key": key} if key else {})
            if path in self.drops:
                self.drops.discard(path)
                return Reply(reply.status, reply.body, reply.headers, drop=True)
            return reply

    def _replay(self, found: _Idempotent, method: str, path: str, form: Obj, key: str) -> Reply:
        if found.reply is None:
            return _reply(StripeFailure(409, {
                "code": "idempotency_key_in_use", "type": "idempotency_error",
                "doc_url": "https://stripe.com/docs/error-codes/idempotency-key-in-use",
                "message": ("There is currently another in-progress request using this Idempotent Key (that "
                            "probably means you submitted twice, and the other request is still going through): "
                            f"{key}. Please try again later.")}))
        if (found.method, found.path) != (method, path):
            return _reply(StripeFailure(400, {"type": "idempotency_error", "message": (
                f"Keys for idempotent requests can only be used for the same endpoint they were first used for "
                f"('{path}' vs '{found.path}'). Try using a key other than '{key}' if you meant to execute a "
                "different request.")}))
        if found.form != form:
            return _reply(StripeFailure(400, {"type": "idempotency_error", "message": (
                "Keys for idempotent requests can only be used with the same parameters they were first used "
                f"with. Try using a key other than '{key}' if you meant to execute a different request.")}))
        return Reply(found.reply.status, found.reply.body,
                     {**found.reply.headers, "Idempotency-Key": key, "Idempotent-Replayed": "true"})

    def _answer(self, method: str, path: str, form: Obj, key: str | None) -> tuple[int, Obj]:
        parts = path.strip("/").split("/")
        request = {"id": f"req_{uuid.uuid4().hex[:14]}", "idempotency_key": key}
        routes: dict[tuple[str, str], Callable[[], Obj]] = {
            ("POST", "v1/checkout/sessions"): lambda: self._create_checkout(form),
            ("GET", "v1/checkout/sessions"): lambda: self._list(
                "/v1/checkout/sessions", self._sessions_matching(form), form),
            ("POST", "v1/refunds"): lambda: self._refund_view(self._create_refund(form, request)),
            ("GET", "v1/refunds"): lambda: self._list("/v1/refunds", [
                r for r in reversed(self.refunds.values())
                if r["payment_intent"] == form.get("payment_intent", r["payment_intent"])
                and r["charge"] == form.get("charge", r["charge"])], form),
            ("GET", "v1/charges"): lambda: self._list("/v1/charges", [
                self._charge_view(c, "data.refunds" in _expands(form)) for c in reversed(self.charges.values())
                if c["payment_intent"] == form.get("payment_intent", c["payment_intent"])], form),
        }
        route = routes.get((method, "/".join(parts)))
        if route is not None:
            return 200, route()
        if len(parts) == 4 and parts[:3] == ["v1", "checkout", "sessions"] and method == "GET":
            return 200, self._expanded(self._get(self.sessions, parts[3], "checkout.session", "session"), form)
        if len(parts) == 5 and parts[:3] == ["v1", "checkout", "sessions"] and parts[4] == "expire" \
                and method == "POST":
            session = self._get(self.sessions, parts[3], "checkout.session", "session")
            if session["status"] != "open":
                raise invalid('Only Checkout Sessions with a status in ["open"] can be expired. '
                              f"This Checkout Session has a status of `{session['status']}`.")
            dict.update(session, status="expired", url=None)
            self._emit("checkout.session.expired", session, request=request)
            return 200, self._public(session)
        if len(parts) == 3 and method == "GET" and parts[1] == "charges":
            charge = self._get(self.charges, parts[2], "charge", "id")
            return 200, self._charge_view(charge, "refunds" in _expands(form))
        if len(parts) == 3 and method == "GET" and parts[1] == "payment_intents":
            return 200, self._expanded(self._get(self.payment_intents, parts[2], "payment_intent", "intent"), form)
        if len(parts) == 3 and method == "GET" and parts[1] == "refunds":
            return 200, self._refund_view(self._get(self.refunds, parts[2], "refund", "refund"))
        raise invalid(f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can "
                      "help at https://support.stripe.com/.", status=404)

    # --- objects ---------------------------------------------------------------------------------

    def _get(self, store: dict[str, Any], object_id: str, kind: str, param: str) -> Any:
        found = store.get(object_id)
        if found is None:
            raise no_such(kind, object_id, param)
        return found

    def _open_session(self, checkout_id: str) -> dict[str, Any]:
        session = self.sessions[checkout_id]
        if session["status"] != "open":
            raise ValueError(f"{checkout_id} is {session['status']}, not open")
        return session

    def _create_checkout(self, form: Obj) -> Obj:
        for param in ("mode",):
            if param not in form:
                raise missing_param(param)
        now = int(time.time())
        expires_at = _int(form, "expires_at") if "expires_at" in form else now + 86400
        if expires_at < now + 30 * 60 - 10:
            raise invalid("The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
                          stored=False, param="expires_at")
        if expires_at > now + 24 * 3600:
            raise invalid("The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
                          stored=False, param="expires_at")
        items = form.get("line_items") or []
        if form["mode"] == "payment" and not items:
            raise invalid("You must provide at least one line item.", stored=False, param="line_items")
        amount = sum(int(i["price_data"]["unit_amount"]) * int(i.get("quantity", 1)) for i in items)
        currency = items[0]["price_data"]["currency"] if items else None
        session = self.checkout_session(
            metadata=form.get("metadata") or {}, client_reference_id=form.get("client_reference_id"),
            amount_total=amount, amount_subtotal=amount, currency=currency, mode=form["mode"],
            success_url=form.get("success_url"), cancel_url=form.get("cancel_url"), expires_at=expires_at,
            created=now, customer_email=form.get("customer_email"),
        )
        self.intent_data[session["id"]] = form.get("payment_intent_data") or {}
        return self._public(session)

    def _paid_by_edit(self, session: dict[str, Any]) -> None:
        if session.get("payment_status") == "paid" and session.get("payment_intent") is None \
                and session.get("mode") == "payment" and session.get("amount_total") is not None:
            with self.lock:
                self._charge(session, async_payment=False)

    def _charge(self, session: dict[str, Any], *, async_payment: bool) -> None:
        """The PaymentIntent and Charge a Checkout payment creates, and the session completed."""
        now = int(time.time())
        amount, currency = int(session["amount_total"]), str(session["currency"])
        intent, charge = fixture("payment_intent"), fixture("charge")
        intent_id, charge_id = _id("pi"), _id("ch")
        extra = self.intent_data.get(session["id"]) or {}
        intent.update({
            "id": intent_id, "amount": amount, "currency": currency, "created": now, "canceled_at": None,
            "amount_received": 0 if async_payment else amount, "latest_charge": charge_id,
            "status": "processing" if async_payment else "succeeded", "last_payment_error": None,
            "next_action": None, "processing": {"type": "card"} if async_payment else None,
            "client_secret": f"{intent_id}_secret_{uuid.uuid4().hex[:24]}", "metadata": extra.get("metadata") or {},
            "payment_method": _id("pm"), "transfer_data": None,
        })
        charge.update({
            "id": charge_id, "amount": amount, "currency": currency, "created": now, "payment_intent": intent_id,
            "amount_captured": 0 if async_payment else amount, "captured": not async_payment,
            "paid": not async_payment, "status": "pending" if async_payment else "succeeded",
            "amount_refunded": 0, "refunded": False, "balance_transaction": _id("txn"),
            "payment_method": intent["payment_method"], "description": None,
            "metadata": extra.get("metadata") or {},
        })
        charge.pop("refunds", None)  # not part of a Charge since API version 2022-11-15 unless expanded
        self.payment_intents[intent_id], self.charges[charge_id] = intent, charge
        dict.update(session, status="complete", payment_intent=intent_id, url=None,
                    payment_status="unpaid" if async_payment else "paid")

    def _create_refund(self, form: Obj, request: Obj) -> Obj:
        if "payment_intent" in form:
            intent = self._find(self.payment_intents, form["payment_intent"], "payment_intent")
            charge = self.charges.get(intent.get("latest_charge") or "")
            if charge is None or charge["status"] != "succeeded":
                raise invalid(f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund.",
                              code="charge_not_refundable", param="payment_intent")
        elif "charge" in form:
            charge = self._find(self.charges, form["charge"], "charge")
        else:
            raise invalid("One of the following params should be provided for this request: payment_intent or "
                          "charge.", stored=False)
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = _int(form, "amount") if "amount" in form else remaining
        if "amount" in form and amount <= 0:
            raise invalid("Invalid positive integer", stored=False, code="parameter_invalid_integer", param="amount")
        if remaining <= 0:
            raise invalid(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded",
                          doc_url="https://stripe.com/docs/error-codes/charge-already-refunded")
        if amount > remaining:
            raise invalid(f"Refund amount ({_money(amount, charge['currency'])}) is greater than unrefunded amount "
                          f"on charge ({_money(remaining, charge['currency'])})", param="amount")
        refund = fixture("refund")
        pending = self.refund_mode == "pending"
        refund.update({
            "id": _id("re"), "amount": amount, "charge": charge["id"], "payment_intent": charge["payment_intent"],
            "currency": charge["currency"], "created": int(time.time()), "metadata": form.get("metadata") or {},
            "reason": form.get("reason"), "status": "pending" if pending else "succeeded",
            "balance_transaction": None if pending else _id("txn"),
        })
        self.refunds[refund["id"]] = refund
        self._recount(charge)
        self._emit("refund.created", refund, request=request)
        self._emit("charge.refunded", self._charge_view(charge, False), request=request, about=refund["id"])
        return refund

    def _find(self, store: dict[str, Obj], object_id: str, kind: str) -> Obj:
        found = store.get(object_id)
        if found is None:
            raise no_such(kind, object_id, kind, status=400)
        return found

    def _recount(self, charge: Obj) -> None:
        charge["amount_refunded"] = sum(r["amount"] for r in self.refunds.values()
                                        if r["charge"] == charge["id"] and r["status"] in ("pending", "succeeded"))
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]

    def _charge_view(self, charge: Obj, expand_refunds: bool) -> Obj:
        view = copy.deepcopy(charge)
        if expand_refunds:
            data = [self._refund_view(r) for r in reversed(self.refunds.values()) if r["charge"] == charge["id"]]
            view["refunds"] = {"object": "list", "data": data, "has_more": False,
                               "url": f"/v1/charges/{charge['id']}/refunds"}
        return view

    def _refund_view(self, refund: Obj) -> Obj:
        return copy.deepcopy(refund)

    def _public(self, obj: dict[str, Any]) -> Obj:
        return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}

    def _expanded(self, obj: dict[str, Any], form: Obj) -> Obj:
        view = self._public(obj)
        for path in _expands(form):
            target = {"payment_intent": self.payment_intents, "latest_charge": self.charges}.get(path)
            if target is not None and isinstance(view.get(path), str):
                found = target[view[path]]
                view[path] = self._charge_view(found, False) if path == "latest_charge" else copy.deepcopy(found)
        return view

    def _sessions_matching(self, form: Obj) -> list[Obj]:
        created = form.get("created") or {}
        found = [self._public(s) for s in reversed(self.sessions.values())
                 if s.get("created", 0) >= int(created.get("gte", 0) if isinstance(created, dict) else created)
                 and s["status"] == form.get("status", s["status"])
                 and s.get("payment_intent") == form.get("payment_intent", s.get("payment_intent"))]
        return sorted(found, key=lambda s: -int(s.get("created", 0)))

    def _list(self, url: str, found: list[Obj], form: Obj) -> Obj:
        """A list page, newest first, as Stripe pages it (limit, starting_after, has_more)."""
        if "starting_after" in form:
            ids = [o["id"] for o in found]
            after = form["starting_after"]
            found = found[ids.index(after) + 1:] if after in ids else []
        limit = int(form.get("limit", 10))
        return {"object": "list", "url": url, "has_more": len(found) > limit, "data": found[:limit]}

    def _emit(self, event_type: str, obj: dict[str, Any], *, request: Obj | None = None,
              previous_attributes: Obj | None = None, about: str | None = None) -> Obj:
        evt = event(event_type, self._public(obj),
                    request=request or {"id": None, "idempotency_key": None})
        if previous_attributes is not None:
            evt["data"]["previous_attributes"] = previous_attributes
        self.events.append(evt)
        self._about[evt["id"]] = about or str(obj["id"])
        return copy.deepcopy(evt)

    def _object_of(self, evt: Obj) -> Obj:
        obj: Obj = evt["data"]["object"]
        return obj

    def _events_of(self, object_id: str) -> list[Obj]:
        return [copy.deepcopy(e) for e in self.events if self._about.get(e["id"]) == object_id]

    def events_of(self, object_id: str) -> list[Obj]:
        """The events Stripe sent about a refund (`refund.*`, and the `charge.refunded` it caused), a
        checkout or a charge, oldest first."""
        with self.lock:
            return self._events_of(object_id)


def _api_key(authorization: str) -> str:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        import base64

        return base64.b64decode(credentials).decode(errors="replace").partition(":")[0]
    return ""


def _reply(exc: StripeFailure) -> Reply:
    return Reply(exc.status, json.dumps({"error": exc.error}).encode())


def serve(stub: StripeStub) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            path, _, query = self.path.partition("?")
            pairs = parse_qsl(query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True)
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = stub.handle(method, path, pairs, headers)
            if reply.drop:  # the work is done and stored; the answer is lost on the way
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Request-Id", f"req_{uuid.uuid4().hex[:14]}")
            self.send_header("Stripe-Version", self.headers.get("Stripe-Version") or stripe.api_version)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            self._reply("POST")

        def do_DELETE(self) -> None:
            self._reply("DELETE")

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def event(event_type: str, obj: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A Stripe event around `obj`, from Stripe's own event fixture."""
    evt = fixture("event")
    evt.update({
        "id": f"evt_test_{uuid.uuid4().hex}",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": copy.deepcopy(obj)},
        "api_version": stripe.api_version,  # the endpoint is set to the version pysvc pins
    })
    evt.update(fields)
    return evt


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header, computed exactly as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"
