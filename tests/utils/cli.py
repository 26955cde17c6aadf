"""Running the `pysvc` command as an operator does, against the test stack and a Stripe stub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pysvc.settings import Settings
from tests.utils.stripe import WEBHOOK_SECRET


def pysvc(settings: Settings, stub_url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "STRIPE_"))}
    env.update({
        "SUPABASE_REST_URL": settings.rest_url,
        "SUPABASE_SERVICE_ROLE_KEY": settings.supabase_service_role_key.get_secret_value(),
        "SUPABASE_JWT_SECRET": "unused-by-these-commands-but-required",
        "STRIPE_SECRET_KEY": "sk_test_stub", "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "STRIPE_API_BASE": stub_url,
    })
    return subprocess.run([sys.executable, "-m", "pysvc", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120, check=False)
