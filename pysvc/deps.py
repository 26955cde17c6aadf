"""What the routes get injected: the services built once per process, and the caller's identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pysvc import errors
from pysvc.auth import TokenVerifier
from pysvc.factory import SessionFactory
from pysvc.fulfilment import Fulfilment
from pysvc.intake import Intakes
from pysvc.lifecycle import Lifecycle
from pysvc.metrics import Metrics
from pysvc.outbox import Outbox
from pysvc.postgrest import Rpc, connect
from pysvc.settings import Settings
from pysvc.store import Store
from pysvc.stripe_api import StripeApi
from pysvc.webhook import Webhook

if TYPE_CHECKING:
    from pysvc.background import Supervisor


@dataclass
class Services:
    """Everything the routes use, built once per process at start-up."""

    settings: Settings
    rpc: Rpc
    store: Store
    stripe: StripeApi
    intakes: Intakes
    fulfilment: Fulfilment
    webhook: Webhook
    tokens: TokenVerifier
    lifecycle: Lifecycle
    outbox: Outbox
    metrics: Metrics
    background: Supervisor | None = None  # set by the app while its background worker runs

    @classmethod
    def build(cls, settings: Settings) -> Services:
        metrics = Metrics()  # one registry per app
        rpc = Rpc(connect(settings.rest_url, settings.supabase_service_role_key.get_secret_value()), metrics=metrics)
        store = Store(rpc.client, rpc)
        factory = SessionFactory(rpc, metrics)
        stripe = StripeApi(settings)
        outbox = Outbox(rpc, stripe)
        fulfilment = Fulfilment(factory, outbox, rpc)
        return cls(
            settings=settings, rpc=rpc, store=store, stripe=stripe,
            intakes=Intakes(factory, store, stripe), fulfilment=fulfilment,
            webhook=Webhook(rpc, stripe, fulfilment, metrics),
            tokens=TokenVerifier(settings, cache_size=settings.token_cache_size),
            lifecycle=Lifecycle(rpc), outbox=outbox, metrics=metrics,
        )

    async def aclose(self) -> None:
        await self.rpc.aclose()


async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


bearer = HTTPBearer(auto_error=False, description="A Supabase access token (the user's session JWT).")


async def current_user(
    svc: Annotated[Services, Depends(services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> UUID:
    if credentials is None:
        raise errors.Unauthenticated()
    return await svc.tokens.user_id(credentials.credentials)


Svc = Annotated[Services, Depends(services)]
Customer = Annotated[UUID, Depends(current_user)]
Mechanic = Annotated[UUID, Depends(current_user)]  # the database decides whether the user is a mechanic
User = Annotated[UUID, Depends(current_user)]

# What any route behind a signed-in user may answer (for its OpenAPI responses).
SIGNED_IN = (errors.Unauthenticated, errors.UnknownUser, errors.InvalidRequest, errors.AuthUnavailable,
             errors.BackendUnavailable)
