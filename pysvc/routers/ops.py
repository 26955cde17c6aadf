"""For operators: Prometheus metrics. No customer token; `METRICS_TOKEN`, when set, is required."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials

from pysvc.deps import Svc, bearer
from pysvc.errors import Unauthenticated
from pysvc.ops_stats import CONTENT_TYPE, scrape

router = APIRouter(tags=["ops"])


@router.get("/metrics", include_in_schema=False)
async def metrics(
    svc: Svc, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Response:
    token = svc.settings.metrics_token
    if token is not None and not (credentials and secrets.compare_digest(
            credentials.credentials.encode(), token.get_secret_value().encode())):
        raise Unauthenticated("Authorization: Bearer <METRICS_TOKEN> is required")
    return Response(await scrape(svc.metrics, svc.rpc), media_type=CONTENT_TYPE)
