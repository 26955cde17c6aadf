"""`pysvc dev` as a new user runs it: its own stack home and ports, started, then always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pysvc.local.stack import free_port

PYSVC = [sys.executable, "-m", "pysvc"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without settings that would point pysvc elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SUPABASE_", "STRIPE_")) and k not in ("DATABASE_URL", "API", "TOKEN", "MECH")}
    return {**env, **extra}


@dataclass
class Dev:
    proc: subprocess.Popen[str]
    port: int
    env: dict[str, str]
    output: str  # what it printed up to "Application startup complete"


@contextlib.contextmanager
def running_dev(tmp_path: Path) -> Iterator[Dev]:
    port = free_port()
    env = clean_env(PYSVC_HOME=str(tmp_path / "home"), PYSVC_DB_PORT="0", PYSVC_REST_PORT="0",
                    PYSVC_GATEWAY_PORT="0")
    proc = subprocess.Popen([*PYSVC, "dev", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        output = ""
        deadline = time.monotonic() + 90
        while "Application startup complete" not in output:
            assert time.monotonic() < deadline and proc.poll() is None, output
            output += proc.stdout.readline()
        yield Dev(proc, port, env, output)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        subprocess.run([*PYSVC, "stack", "stop"], env=env, capture_output=True, timeout=60, check=False)
