"""A CPU-time sampler for the API process, loaded only when the bench profiles it: the bench puts this
folder first on the server's PYTHONPATH and names an output file in PYSVC_BENCH_CPU_PROFILE, then
sends SIGUSR1 when the measured load starts (sampling starts) and SIGUSR2 when it is over (sampling
stops and the file is written). Start-up and warm-up are not in it.

ITIMER_PROF fires after every `PYSVC_BENCH_CPU_PROFILE_INTERVAL` seconds of CPU the process uses
(user + system, all threads), so the samples follow CPU, not wall time: a request waiting on
PostgREST costs nothing here. The handler runs in the main thread (the event loop) and records its
stack; CPU a worker thread used is charged to whatever the main thread was doing at that moment.
The collapsed stacks are in py-spy's raw format: `frame;frame;... count`, outermost first."""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from types import FrameType

OUT = os.environ.get("PYSVC_BENCH_CPU_PROFILE")


def _install(out: str) -> None:
    interval = float(os.environ.get("PYSVC_BENCH_CPU_PROFILE_INTERVAL", "0.001"))
    stacks: Counter[tuple[tuple[str, str], ...]] = Counter()
    roots = sorted((p for p in sys.path if p), key=len, reverse=True)

    def where(filename: str) -> str:
        for root in roots:
            if filename.startswith(root.rstrip("/") + "/"):
                return filename[len(root.rstrip("/")) + 1:]
        return filename

    def sample(signum: int, frame: FrameType | None) -> None:
        path: list[tuple[str, str]] = []
        while frame is not None:
            code = frame.f_code
            path.append((code.co_qualname, code.co_filename))
            frame = frame.f_back
        stacks[tuple(reversed(path))] += 1

    def start(signum: int, frame: FrameType | None) -> None:
        stacks.clear()
        signal.setitimer(signal.ITIMER_PROF, interval, interval)

    def stop(signum: int, frame: FrameType | None) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0)
        names: dict[str, str] = {}
        tmp = f"{out}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for stack, count in stacks.items():
                frames = ";".join(f"{func} ({names.setdefault(file, where(file))})" for func, file in stack)
                f.write(f"{frames} {count}\n")
        os.replace(tmp, out)

    signal.signal(signal.SIGPROF, sample)
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


if OUT:
    _install(OUT)
