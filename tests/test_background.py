"""The background worker `pysvc serve` runs: every step supervised on its own, on the real stack."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import pytest

from pysvc import ops_stats
from pysvc.api import create_app
from pysvc.background import Supervisor
from pysvc.deps import Services
from pysvc.local.stack import StackInfo
from tests.utils.app import api_settings, running_api


async def explode() -> None:
    raise RuntimeError("an assertion deep in a step")


def sample(metrics_text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_step_raising_unexpectedly_is_logged_with_its_traceback_counted_and_the_others_still_run(
    stack: StackInfo, caplog: pytest.LogCaptureFixture,
) -> None:
    async def one_pass() -> tuple[Supervisor, bytes]:
        svc = Services.build(api_settings(stack, background_interval_seconds=60))
        try:
            supervisor = Supervisor(svc)
            supervisor.jobs = {"outbox": supervisor.jobs["outbox"], "sweep": supervisor.jobs["sweep"]}  # outbox first
            supervisor.jobs["outbox"].run = explode
            await supervisor.run_once()
            return supervisor, await ops_stats.scrape(svc.metrics, svc.rpc)
        finally:
            await svc.aclose()

    with caplog.at_level(logging.ERROR, logger="pysvc.background"):
        supervisor, scraped = asyncio.run(one_pass())

    failed = [r for r in caplog.records if "outbox" in r.getMessage()]
    assert failed and failed[0].exc_info is not None and "an assertion deep in a step" in str(failed[0].exc_info[1])
    text = scraped.decode()
    assert sample(text, "pysvc_background_failures_total", job="outbox", kind="unexpected") == 1
    assert supervisor.jobs["sweep"].last_success is not None  # the step after the failure ran
    assert sample(text, "pysvc_background_last_success_timestamp_seconds", job="sweep") is not None
    assert sample(text, "pysvc_background_last_success_timestamp_seconds", job="outbox") is None


def test_a_step_that_stops_succeeding_makes_healthz_degraded_but_200_and_its_gauge_stops(stack: StackInfo) -> None:
    settings = api_settings(stack, background_interval_seconds=0.1)
    app = create_app(settings)
    with running_api(settings, app) as base, httpx.Client(base_url=base, timeout=10) as client:
        healthy = client.get("/healthz").json()
        svc: Services = app.state.services
        assert svc.background is not None
        svc.background.jobs["outbox"].run = explode
        time.sleep(0.6)  # well over 3 intervals
        first = client.get("/metrics").text
        time.sleep(0.3)
        degraded = client.get("/healthz")
        second = client.get("/metrics").text

    assert healthy["status"] == "ok" and set(healthy["background"]) == {"sweep", "outbox"}
    assert degraded.status_code == 200
    body: dict[str, Any] = degraded.json()
    assert body["status"] == "degraded"
    assert (body["background"]["outbox"]["stalled"], body["background"]["sweep"]["stalled"]) == (True, False)
    gauge = "pysvc_background_last_success_timestamp_seconds"
    assert sample(first, gauge, job="outbox") == sample(second, gauge, job="outbox")
    assert (sample(second, gauge, job="sweep") or 0) > (sample(first, gauge, job="sweep") or 0)
    assert (sample(second, "pysvc_background_failures_total", job="outbox", kind="unexpected") or 0) >= 3


def test_without_a_background_worker_healthz_says_ok_alone(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
