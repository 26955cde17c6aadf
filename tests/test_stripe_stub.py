"""The Stripe API stub itself, driven by the official `stripe` library: it must be as strict as Stripe,
or the tests that rely on it prove nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from tests.stripe_stub import StripeStub, parse_form
from tests.utils.stripe import stripe_client, stripe_stub_server

CHECKOUT: dict[str, Any] = {
    "mode": "payment",
    "line_items": [{"quantity": 1, "price_data": {
        "currency": "usd", "unit_amount": 2999, "product_data": {"name": "Video consultation"}}}],
    "metadata": {"intake_id": "in_1", "plan": "standard"},
    "success_url": "http://shop.example/success",
}


@pytest.fixture
def stub() -> Iterator[StripeStub]:
    with stripe_stub_server() as s:
        yield s


@pytest.fixture
def client(stub: StripeStub) -> stripe.StripeClient:
    return stripe_client(stub)


def create(client: stripe.StripeClient, key: str | None = None, **params: Any) -> stripe.checkout.Session:
    return client.v1.checkout.sessions.create({**CHECKOUT, **params},  # type: ignore[arg-type]
                                              {"idempotency_key": key} if key else None)


def error_of(exc: stripe.StripeError) -> dict[str, Any]:
    """The `error` object of Stripe's answer."""
    assert isinstance(exc.json_body, dict)
    error: dict[str, Any] = exc.json_body["error"]
    return error


def paid(stub: StripeStub, client: stripe.StripeClient) -> dict[str, Any]:
    return stub.pay(create(client).id)


# --- idempotency --------------------------------------------------------------------------------

def test_the_same_key_and_parameters_replay_the_stored_answer(stub: StripeStub, client: stripe.StripeClient) -> None:
    first = create(client, "k1")
    again = create(client, "k1")

    assert again.id == first.id
    assert again.last_response is not None and again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(stub.sessions) == 1


def test_parameters_are_compared_parsed_not_as_sent(stub: StripeStub, client: stripe.StripeClient) -> None:
    first = create(client, "k1")
    reordered = client.v1.checkout.sessions.create(
        dict(reversed(list(CHECKOUT.items()))),  # type: ignore[arg-type]
        {"idempotency_key": "k1"})

    assert reordered.id == first.id


def test_the_same_key_with_other_parameters_is_an_idempotency_error(client: stripe.StripeClient) -> None:
    create(client, "k1")

    with pytest.raises(stripe.IdempotencyError) as refused:
        create(client, "k1", metadata={"intake_id": "in_1", "plan": "quick"})

    assert refused.value.http_status == 400
    assert error_of(refused.value) == {
        "type": "idempotency_error",
        "message": "Keys for idempotent requests can only be used with the same parameters they were first used "
                   "with. Try using a key other than 'k1' if you meant to execute a different request."}


def test_the_same_key_on_another_endpoint_is_an_idempotency_error(
    stub: StripeStub, client: stripe.StripeClient,
) -> None:
    checkout = paid(stub, client)
    create(client, "k1")

    with pytest.raises(stripe.IdempotencyError, match="only be used for the same endpoint"):
        client.v1.refunds.create({"payment_intent": checkout["payment_intent"]}, {"idempotency_key": "k1"})


def test_keys_belong_to_one_account(stub: StripeStub, client: stripe.StripeClient) -> None:
    first = create(client, "k1")
    other = create(stripe_client(stub, "sk_test_other_account"), "k1", metadata={"plan": "quick"})

    assert other.id != first.id


def test_a_key_still_in_flight_is_409_idempotency_key_in_use(stub: StripeStub, client: stripe.StripeClient) -> None:
    stub.delay("/v1/checkout/sessions", 2)
    first: list[stripe.checkout.Session] = []
    worker = threading.Thread(target=lambda: first.append(create(client, "k1")))
    worker.start()
    time.sleep(0.5)

    with pytest.raises(stripe.APIError) as busy:
        create(client, "k1")
    worker.join()

    assert busy.value.http_status == 409
    assert (error_of(busy.value)["type"], error_of(busy.value)["code"]) == (
        "idempotency_error", "idempotency_key_in_use")
    assert len(first) == 1 and len(stub.sessions) == 1


def test_parameters_stripe_refuses_are_not_stored_under_the_key(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="at least 30 minutes"):
        create(client, "k1", expires_at=int(time.time()) + 60)

    assert create(client, "k1").status == "open"


# --- a reply lost on the way --------------------------------------------------------------------

def test_a_dropped_reply_is_a_connection_error_and_the_identical_retry_gets_the_same_checkout(
    stub: StripeStub, client: stripe.StripeClient,
) -> None:
    stub.drop_reply_once("/v1/checkout/sessions")

    with pytest.raises(stripe.APIConnectionError):
        create(client, "k1")
    retried = create(client, "k1")

    assert list(stub.sessions) == [retried.id]


def test_a_dropped_reply_then_a_retry_with_other_parameters_is_an_idempotency_error(
    client: stripe.StripeClient, stub: StripeStub,
) -> None:
    stub.drop_reply_once("/v1/checkout/sessions")
    with pytest.raises(stripe.APIConnectionError):
        create(client, "k1", expires_at=int(time.time()) + 3600)

    with pytest.raises(stripe.IdempotencyError):
        create(client, "k1", expires_at=int(time.time()) + 3601)


# --- checkout sessions --------------------------------------------------------------------------

def test_an_open_checkout_has_no_payment_intent(stub: StripeStub, client: stripe.StripeClient) -> None:
    checkout = create(client)

    assert (checkout.status, checkout.payment_status, checkout.payment_intent) == ("open", "unpaid", None)
    assert checkout.amount_total == 2999
    assert stub.sessions[checkout.id]["metadata"] == {"intake_id": "in_1", "plan": "standard"}


def test_paying_completes_the_checkout_with_a_payment_intent_and_its_charge(
    stub: StripeStub, client: stripe.StripeClient,
) -> None:
    checkout = paid(stub, client)

    retrieved = client.v1.checkout.sessions.retrieve(checkout["id"])
    intent = client.v1.payment_intents.retrieve(checkout["payment_intent"])
    assert (retrieved.status, retrieved.payment_status, retrieved.payment_intent) == (
        "complete", "paid", checkout["payment_intent"])
    assert (intent.status, intent.amount_received) == ("succeeded", 2999)
    charge = client.v1.charges.retrieve(str(intent.latest_charge))
    assert (charge.amount, charge.payment_intent, charge.paid) == (2999, intent.id, True)


def test_an_async_payment_is_unpaid_until_it_settles(stub: StripeStub, client: stripe.StripeClient) -> None:
    checkout_id = create(client).id

    completed = stub.pay(checkout_id, async_payment=True)
    settled = stub.settle_async(checkout_id, succeeded=True)

    assert (completed["status"], completed["payment_status"]) == ("complete", "unpaid")
    assert completed["payment_intent"] is not None
    assert settled["payment_status"] == "paid"
    assert [e["type"] for e in stub.events_of(checkout_id)] == [
        "checkout.session.completed", "checkout.session.async_payment_succeeded"]


def test_expiring_an_open_checkout_closes_it(stub: StripeStub, client: stripe.StripeClient) -> None:
    checkout_id = create(client).id

    expired = client.v1.checkout.sessions.expire(checkout_id)

    assert (expired.status, expired.url) == ("expired", None)
    assert [e["type"] for e in stub.events_of(checkout_id)] == ["checkout.session.expired"]


def test_expiring_a_completed_checkout_is_refused_as_stripe_words_it(
    stub: StripeStub, client: stripe.StripeClient,
) -> None:
    checkout = paid(stub, client)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.checkout.sessions.expire(checkout["id"])

    assert refused.value.http_status == 400
    assert str(refused.value.user_message) == (
        'Only Checkout Sessions with a status in ["open"] can be expired. '
        "This Checkout Session has a status of `complete`.")


def test_completed_checkouts_are_listed_newest_first_across_pages(
    stub: StripeStub, client: stripe.StripeClient,
) -> None:
    ids = [paid(stub, client)["id"] for _ in range(3)]
    create(client)  # open: not listed

    page = client.v1.checkout.sessions.list({"status": "complete", "limit": 2})

    assert sorted(s.id for s in page.auto_paging_iter()) == sorted(ids)
    assert page.has_more is True


def test_an_unknown_checkout_is_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.retrieve("cs_test_nobody")

    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    assert str(missing.value.user_message) == "No such checkout.session: 'cs_test_nobody'"


def test_an_unknown_route_is_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError, match=r"Unrecognized request URL \(GET: /v1/customers/cus_1\)"):
        client.v1.customers.retrieve("cus_1")


# --- refunds and charges ------------------------------------------------------------------------

def test_a_refund_without_an_amount_refunds_what_remains(stub: StripeStub, client: stripe.StripeClient) -> None:
    checkout = paid(stub, client)
    client.v1.refunds.create({"payment_intent": checkout["payment_intent"], "amount": 999})

    rest = client.v1.refunds.create({"payment_intent": checkout["payment_intent"]})

    charge = client.v1.charges.list({"payment_intent": checkout["payment_intent"]}).data[0]
    assert (rest.amount, rest.status) == (2000, "succeeded")
    assert (charge.amount_refunded, charge.refunded) == (2999, True)


def test_refunding_more_than_remains_is_refused(stub: StripeStub, client: stripe.StripeClient) -> None:
    checkout = paid(stub, client)
    client.v1.refunds.create({"payment_intent": checkout["payment_intent"], "amount": 1000})

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create({"payment_intent": checkout["payment_intent"], "amount": 2000})

    assert (refused.value.http_status, refused.value.param) == (400, "amount")
    assert str(refused.value.user_message) == (
        "Refund amount ($20.00) is greater than unrefunded amount on charge ($19.99)")


def test_refunding_a_fully_refunded_charge_is_charge_already_refunded(
    stub: StripeStub, client: stripe.StripeClient,
) -> None:
    checkout = paid(stub, client)
    client.v1.refunds.create({"payment_intent": checkout["payment_intent"]})

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create({"payment_intent": checkout["payment_intent"]})

    assert refused.value.code == "charge_already_refunded"


def test_a_refund_of_an_unpaid_checkout_is_refused(stub: StripeStub, client: stripe.StripeClient) -> None:
    checkout_id = create(client).id
    intent = stub.sessions[checkout_id]["payment_intent"]

    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create({"payment_intent": intent or "pi_none"})


def test_a_charge_has_no_refunds_unless_expanded(stub: StripeStub, client: stripe.StripeClient) -> None:
    checkout = paid(stub, client)
    refund = client.v1.refunds.create({"payment_intent": checkout["payment_intent"], "amount": 100})
    charge_id = str(refund.charge)

    plain = client.v1.charges.retrieve(charge_id)
    expanded = client.v1.charges.retrieve(charge_id, {"expand": ["refunds"]})

    assert "refunds" not in plain
    assert [r.id for r in expanded.refunds.data] == [refund.id]  # type: ignore[union-attr]


def test_a_pending_refund_and_its_events(stub: StripeStub, client: stripe.StripeClient) -> None:
    checkout = paid(stub, client)
    stub.refund_mode = "pending"

    refund = client.v1.refunds.create({"payment_intent": checkout["payment_intent"]},
                                      {"idempotency_key": "refund-1"})

    events = stub.events_of(refund.id)
    assert refund.status == "pending"
    assert [e["type"] for e in events] == ["refund.created", "charge.refunded"]
    assert events[0]["request"]["idempotency_key"] == "refund-1"
    charge = events[1]["data"]["object"]
    assert (charge["amount_refunded"], charge["refunded"], "refunds" in charge) == (2999, True, False)


def test_a_refund_that_fails_later_gives_the_money_back_to_the_charge(
    stub: StripeStub, client: stripe.StripeClient,
) -> None:
    checkout = paid(stub, client)
    refund = client.v1.refunds.create({"payment_intent": checkout["payment_intent"]})

    events = stub.fail_refund(refund.id, reason="expired_or_canceled_card")

    assert [e["type"] for e in events] == ["refund.failed", "refund.updated", "charge.refund.updated"]
    assert {(e["data"]["object"]["status"], e["data"]["object"]["failure_reason"]) for e in events} == {
        ("failed", "expired_or_canceled_card")}
    assert events[1]["data"]["previous_attributes"]["status"] == "succeeded"
    retrieved = client.v1.refunds.retrieve(refund.id)
    charge = client.v1.charges.retrieve(str(refund.charge))
    assert retrieved.status == "failed"
    assert (charge.amount_refunded, charge.refunded) == (0, False)


def test_a_dashboard_refund_sends_refund_created_and_charge_refunded(
    stub: StripeStub, client: stripe.StripeClient,
) -> None:
    checkout = paid(stub, client)

    events = stub.dashboard_refund(checkout["payment_intent"], 1000)

    assert [e["type"] for e in events] == ["refund.created", "charge.refunded"]
    assert events[1]["data"]["object"]["amount_refunded"] == 1000
    listed = client.v1.refunds.list({"payment_intent": checkout["payment_intent"]})
    assert [r.id for r in listed.data] == [events[0]["data"]["object"]["id"]]


# --- rate limits and form parsing ---------------------------------------------------------------

def test_a_rate_limited_request_is_a_rate_limit_error(stub: StripeStub, client: stripe.StripeClient) -> None:
    stub.rate_limit("/v1/checkout/sessions", 1)

    with pytest.raises(stripe.RateLimitError) as limited:
        create(client)

    assert limited.value.http_status == 429
    assert error_of(limited.value)["code"] == "rate_limit"
    assert create(client).status == "open"


def test_form_parameters_are_parsed_as_stripe_parses_them() -> None:
    form = parse_form([("metadata[plan]", "quick"), ("line_items[0][price_data][unit_amount]", "2999"),
                       ("line_items[0][quantity]", "1"), ("expand[]", "refunds"), ("expand[]", "latest_charge")])

    assert form == {"metadata": {"plan": "quick"}, "expand": ["refunds", "latest_charge"],
                    "line_items": [{"price_data": {"unit_amount": "2999"}, "quantity": "1"}]}


def test_marking_a_stored_checkout_paid_by_hand_pays_it_as_stripe_would(
    stub: StripeStub, client: stripe.StripeClient,
) -> None:
    checkout_id = create(client).id

    stub.sessions[checkout_id].update({"status": "complete", "payment_status": "paid"})

    intent = client.v1.payment_intents.retrieve(stub.sessions[checkout_id]["payment_intent"])
    assert (intent.status, intent.amount) == ("succeeded", 2999)


def test_every_request_is_recorded_with_its_key(stub: StripeStub, client: stripe.StripeClient) -> None:
    create(client, "k1")

    [call] = stub.calls_to("POST", "/v1/checkout/sessions")
    assert (call.idempotency_key, call.params["metadata[plan]"], call.form["line_items"][0]["quantity"]) == (
        "k1", "standard", "1")
