"""The command line, settings at start-up, and the factory's typed edges."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from pysvc.errors import BackendUnavailable, ConfigError, InvalidParams
from pysvc.factory import CreateSessionParams, create_session_record
from pysvc.local.stack import PROJECT_ROOT, StackInfo, free_port
from pysvc.settings import load_settings
from tests.utils.dev import running_dev

PYSVC = [sys.executable, "-m", "pysvc"]
SUPABASE_VARS = ("SUPABASE_URL", "SUPABASE_REST_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_JWT_SECRET",
                 "SUPABASE_JWKS_URL", "DATABASE_URL")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SUPABASE_VARS and not k.startswith("STRIPE_")}
    return {**env, **extra}


@pytest.mark.parametrize("command", [[], ["stack"], ["migrate"], ["serve"], ["dev"]])
def test_every_command_has_help(command: list[str]) -> None:
    r = subprocess.run([*PYSVC, *command, "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0
    assert "usage: pysvc" in r.stdout


def test_missing_settings_fail_at_start_up_naming_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in SUPABASE_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="SUPABASE_SERVICE_ROLE_KEY"):
        load_settings()


def test_serve_without_settings_exits_with_the_missing_name(tmp_path: Path) -> None:
    r = subprocess.run([*PYSVC, "serve", "--port", str(free_port())], capture_output=True, text=True,
                       cwd=tmp_path, env=clean_env(PYTHONPATH=str(PROJECT_ROOT)), timeout=60, check=False)
    assert r.returncode == 1
    assert "SUPABASE_SERVICE_ROLE_KEY" in r.stderr
    assert "Traceback" not in r.stderr


def test_supabase_url_means_rest_under_rest_v1_and_jwks_under_auth(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(supabase_url="https://abc.supabase.co/", supabase_service_role_key="k")
    assert settings.rest_url == "https://abc.supabase.co/rest/v1"
    assert settings.jwks_url == "https://abc.supabase.co/auth/v1/.well-known/jwks.json"


def test_params_are_validated_before_any_request() -> None:
    with pytest.raises(ValidationError):
        CreateSessionParams(customer_id="nope", plan="free", intake_id=uuid.uuid4(), payment_method="free")  # type: ignore[arg-type]
    with pytest.raises(InvalidParams) as refused:
        CreateSessionParams.parse({"customer_id": str(uuid.uuid4()), "plan": "free", "intake_id": str(uuid.uuid4()),
                      "payment_method": "stripe", "amount_paid": -5})
    assert refused.value.code == "INVALID_PARAMS"


def test_unreachable_postgrest_is_a_retryable_error() -> None:
    params = CreateSessionParams(customer_id=uuid.uuid4(), plan="free", intake_id=uuid.uuid4(),
                                 payment_method="free")  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable):
        create_session_record(f"http://127.0.0.1:{free_port()}", "unused", params)


def test_migrate_command_reports_nothing_pending(stack: StackInfo) -> None:
    r = subprocess.run([*PYSVC, "migrate", "--db-url", stack.database_url], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "0 migration(s) applied" in r.stdout


def test_dev_serves_the_api_and_its_printed_curl_lines_work(tmp_path: Path) -> None:
    with running_dev(tmp_path) as dev:
        proc, port, env, output = dev.proc, dev.port, dev.env, dev.output
        curls = re.findall(r"^  (curl .*)$", output, flags=re.M)
        assert len(curls) == 2
        started = subprocess.run(curls[0], shell=True, capture_output=True, text=True, timeout=30, check=False)
        active = subprocess.run(curls[1], shell=True, capture_output=True, text=True, timeout=30, check=False)
        assert '"sessionId"' in started.stdout, started.stdout + output
        assert '"status":"pending"' in active.stdout, active.stdout
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
        # Ctrl-C stops the API, not the stack, and says so (README's Commands table)
        assert "The local stack keeps running" in rest and "`pysvc stack stop`" in rest, rest
        status = subprocess.run([*PYSVC, "stack", "status"], env=env, capture_output=True, text=True,
                                timeout=60, check=False)
        assert status.returncode == 0 and status.stdout.startswith("running"), status.stdout
