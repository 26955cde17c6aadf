"""Health for load balancers and operators."""

from __future__ import annotations

from fastapi import APIRouter

from pysvc import errors
from pysvc.deps import Svc
from pysvc.schemas import BackgroundJob, Health, error_responses

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", response_model=Health, response_model_exclude_none=True,
    summary="PostgREST and the database answer (503 if not); background steps that stall say `degraded`",
    responses=error_responses(errors.BackendUnavailable),
)
async def healthz(svc: Svc) -> Health:
    await svc.store.ping()
    if svc.background is None:
        return Health()
    jobs = {name: BackgroundJob(last_success_at=job.last_success_at, every_seconds=job.every_seconds,
                                stalled=job.stalled)
            for name, job in svc.background.health().items()}
    return Health(status="degraded" if any(j.stalled for j in jobs.values()) else "ok", background=jobs)


router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
