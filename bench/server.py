"""The API servers (`pysvc serve` for D, the comparison peers for E and F, each as a subprocess) and a
peak-RSS sampler for them and PostgREST."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from bench.target import Target
from pysvc.local.stack import free_port


class ApiUnavailable(Exception):
    """The API could not be imported or did not answer /healthz; the message says why."""


ROOT = Path(__file__).resolve().parent.parent


PEERS = {"E": "bench.peers.first", "F": "bench.peers.floor"}


def api_command(port: int, peer: str | None = None) -> list[str]:
    """`python -m pysvc serve`: the API exactly as shipped, in its own process (the bench imports
    nothing of it); or a comparison peer's module (`bench.peers`), under the same uvicorn options."""
    program = [PEERS[peer]] if peer else ["pysvc", "serve"]
    return [sys.executable, "-m", *program, "--host", "127.0.0.1", "--port", str(port)]


class ApiServer:
    """`pysvc serve` (or the peer `peer`) on a free port with the target's settings; stopped (by its own
    pid) on exit."""

    def __init__(self, target: Target, *, ready_timeout: float = 60.0, env: dict[str, str] | None = None,
                 peer: str | None = None) -> None:
        self.target = target
        self.peer = peer
        self.extra_env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_timeout = ready_timeout
        self.logdir = Path(tempfile.mkdtemp(prefix="pysvc-bench-api-"))
        self.log = self.logdir / "api.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __enter__(self) -> ApiServer:
        env = {
            **os.environ,
            "SUPABASE_REST_URL": self.target.rest_url,
            "SUPABASE_SERVICE_ROLE_KEY": self.target.service_role_key,
            "SUPABASE_JWT_SECRET": self.target.jwt_secret,
            # As shipped: INFO, one access-log line per request (PYSVC_BENCH_LOG_LEVEL=WARNING: without it)
            "LOG_LEVEL": os.environ.get("PYSVC_BENCH_LOG_LEVEL", "INFO"),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
        for key, value in self.extra_env.items():
            env[key] = f"{value}{os.pathsep}{env[key]}" if key == "PYTHONPATH" else value
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                api_command(self.port, self.peer), env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.logdir,  # so no developer's .env is read: the settings come from env alone
            )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.tail()
                self.__exit__(None, None, None)
                raise ApiUnavailable(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        tail = self.tail()
        self.__exit__(None, None, None)
        raise ApiUnavailable(f"{self.name} did not answer /healthz in {self.ready_timeout:.0f}s:\n{tail}")

    @property
    def name(self) -> str:
        return f"`python -m {PEERS[self.peer]}`" if self.peer else "`pysvc serve`"

    def tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the server and any workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        shutil.rmtree(self.logdir, ignore_errors=True)


class PeakRss:
    """Samples the resident memory of process trees in a thread; `peaks_mb` after `stop`."""

    def __init__(self, roots: dict[str, int | None], interval: float = 0.05) -> None:
        self.roots = {name: pid for name, pid in roots.items() if pid is not None}
        self.interval = interval
        self.peaks: dict[str, int] = dict.fromkeys(self.roots, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.roots.items():
                self.peaks[name] = max(self.peaks[name], tree_rss(pid))
            self._stop.wait(self.interval)

    def peaks_mb(self) -> dict[str, float]:
        return {name: round(value / 2**20, 1) for name, value in self.peaks.items()}


def tree_rss(pid: int) -> int:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total
