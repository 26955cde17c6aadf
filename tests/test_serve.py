"""`pysvc serve` as an operator runs it: settings from the environment, one or more workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pysvc.local.stack import StackInfo, free_port


def test_serve_with_two_workers_answers_from_both(stack: StackInfo, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "STRIPE_"))}
    env.update(SUPABASE_URL=stack.supabase_url, SUPABASE_SERVICE_ROLE_KEY=stack.service_role_key,
               SUPABASE_JWT_SECRET=stack.jwt_secret, LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "pysvc", "serve", "--port", str(port), "--workers", "2"],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve --workers 2 did not start"
            time.sleep(0.2)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False)
        answers = {httpx.get(f"http://127.0.0.1:{port}/healthz").status_code for _ in range(20)}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)

    assert answers == {200}
    assert len(workers.stdout.split()) >= 2
