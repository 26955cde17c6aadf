"""Health for load balancers and operators."""

from __future__ import annotations

from fastapi import APIRouter

from pysvc import errors
from pysvc.deps import Svc
from pysvc.schemas import Health, error_responses

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", response_model=Health, summary="PostgREST and the database answer",
    responses=error_responses(errors.BackendUnavailable),
)
async def healthz(svc: Svc) -> Health:
    await svc.store.ping()
    return Health()


router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
