"""The real API on uvicorn, on a free port, with settings for the test stack."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from pysvc.api import Api, create_app
from pysvc.local.stack import StackInfo, free_port
from pysvc.settings import Settings


@contextlib.contextmanager
def running_api(settings: Settings, app: Api | None = None, *, fast_path: bool = True) -> Iterator[str]:
    """The real FastAPI app (this one, or one made from settings) on uvicorn, on a free port, driven over
    real HTTP. `fast_path=False`: the hot route served by its FastAPI declaration instead (pysvc.fastpath),
    to compare the two."""
    port = free_port()
    app = app or create_app(settings)
    if not fast_path:
        app.fast = None
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def api_settings(stack: StackInfo, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "supabase_url": stack.supabase_url,  # through the gateway, as on hosted Supabase
        "supabase_service_role_key": stack.service_role_key,
        "supabase_jwt_secret": stack.jwt_secret,
        "background_interval_seconds": 0,  # tests drive the sweep and the outbox themselves
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
