"""Where the API's CPU goes per intake: py-spy samples `pysvc serve` during a run of path D.

py-spy (PyPI) attaches to the running server from outside (ptrace: root, or
kernel.yama.ptrace_scope = 0), so the API is profiled exactly as it serves. The collapsed stacks are
reduced to (a) each sample charged to the innermost non-stdlib package on its stack (a socket
write called by httpcore is httpcore's), (b) the share of samples in which each package is on the
stack at all (inclusive: the event loop and uvicorn are under everything) and (c) the functions at
the top of the stack (self). Times the API's CPU ms per session (measured from /proc in
the same run) gives ms per intake."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
STDLIB_MARK = f"python{sys.version_info.major}.{sys.version_info.minor}/"


def find_py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, out: Path, duration_s: float, rate: int = 200) -> subprocess.Popen[bytes]:
    py_spy = find_py_spy()
    if py_spy is None:
        raise FileNotFoundError("py-spy not found: `.venv/bin/pip install py-spy`")
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s))), "--rate", str(rate),
         "--format", "raw", "--function", "--nonblocking", "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def component(file: str) -> str:
    """The top-level package a frame's file belongs to: `httpcore`, `starlette`, `pysvc`, `asyncio`...
    py-spy names files relative to their sys.path entry (`anyio/_backends/_asyncio.py`)."""
    for mark in ("site-packages/", STDLIB_MARK):
        if mark in file:
            file = file.split(mark, 1)[1]
    first = file.lstrip("/").split("/", 1)[0]
    return first.removesuffix(".py") or file


def is_stdlib(file: str) -> bool:
    return component(file) in sys.stdlib_module_names or file.startswith("<")


def summarise(raw: str, api_cpu_ms_per_session: float | None, *, top: int = 15) -> dict[str, Any]:
    """Collapsed stacks (`frame;frame;... count`, outermost first) -> inclusive shares by package and
    the top self frames, each also in ms per session when the API's CPU per session is known."""
    total = 0
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    owner: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [FRAME.match(f) for f in stack.split(";")]
        parsed = [(m["func"], m["file"]) for m in frames if m]
        if not parsed:
            continue
        total += count
        for name in {component(file) for _, file in parsed}:
            inclusive[name] += count
        func, file = parsed[-1]
        leaf[f"{func} ({file})"] += count
        outside_stdlib = [file for _, file in parsed if not is_stdlib(file)]
        owner[component(outside_stdlib[-1] if outside_stdlib else file)] += count

    def row(name: str, n: int) -> dict[str, Any]:
        share = n / total if total else 0.0
        ms = round(share * api_cpu_ms_per_session, 3) if api_cpu_ms_per_session else None
        return {"name": name, "share": round(share, 3), "ms_per_session": ms}

    return {
        "samples": total,
        "by_innermost_package": [row(k, v) for k, v in owner.most_common(top)],
        "inclusive_by_package": [row(k, v) for k, v in inclusive.most_common(top)],
        "self_top": [row(k, v) for k, v in leaf.most_common(top)],
    }
