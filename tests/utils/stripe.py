"""Talking to the API as Stripe and as a customer does, and running the Stripe outbox once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import stripe

from pysvc.outbox import Outbox
from pysvc.postgrest import Rpc, connect
from pysvc.settings import Settings
from pysvc.stripe_api import StripeApi
from tests.stripe_stub import StripeStub, serve, sign

WEBHOOK_SECRET = "whsec_test_" + "s3cr3t" * 6


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def deliver(api: httpx.Client, evt: dict[str, Any], *, secret: str = WEBHOOK_SECRET, **kw: Any) -> httpx.Response:
    """POST the event to the webhook as Stripe does: the raw body, signed."""
    return deliver_raw(api, json.dumps(evt).encode(), secret=secret, **kw)


def deliver_raw(api: httpx.Client, payload: bytes, *, secret: str = WEBHOOK_SECRET, **kw: Any) -> httpx.Response:
    return api.post(
        "/api/stripe/webhook", content=payload,
        headers={"Stripe-Signature": sign(payload, secret, **kw), "Content-Type": "application/json"},
    )


def run_outbox(settings: Settings) -> dict[str, int]:
    """One pass of the outbox worker, as `pysvc serve` runs it in the background."""

    async def once() -> dict[str, int]:
        rpc = Rpc(connect(settings.rest_url, settings.supabase_service_role_key.get_secret_value()))
        try:
            return await Outbox(rpc, StripeApi(settings)).run_once(max_requests=100)
        finally:
            await rpc.aclose()

    return asyncio.run(once())


@contextlib.contextmanager
def stripe_stub_server() -> Iterator[StripeStub]:
    """A Stripe API stub on a free port."""
    stub = StripeStub()
    server = serve(stub)
    stub.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stub
    finally:
        server.shutdown()


def stripe_client(stub: StripeStub, key: str = "sk_test_stub") -> stripe.StripeClient:
    """The official `stripe` library pointed at the stub, without its own retries."""
    return stripe.StripeClient(key, base_addresses={"api": stub.base_url},
                               http_client=stripe.HTTPXClient(allow_sync_methods=True), max_network_retries=0)
