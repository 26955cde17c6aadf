"""Settings are checked once at start-up, every problem reported at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pysvc.errors import ConfigError
from pysvc.local.stack import PROJECT_ROOT
from pysvc.settings import load_settings

SUPABASE_VARS = ("SUPABASE_URL", "SUPABASE_REST_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_JWT_SECRET",
                 "SUPABASE_JWKS_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET")


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in SUPABASE_VARS:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_example_env_file_as_copied_is_refused_naming_every_problem(clean: Path) -> None:
    shutil.copy(PROJECT_ROOT / ".env.example", clean / ".env")

    with pytest.raises(ConfigError) as refused:
        load_settings()

    assert "SUPABASE_URL: still the placeholder" in str(refused.value)
    assert "SUPABASE_SERVICE_ROLE_KEY: required" in str(refused.value)


def test_empty_values_count_as_unset_and_malformed_ones_are_named_together(clean: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(supabase_url="supabase.co", supabase_service_role_key=" ", stripe_secret_key="pk_test_1",
                      stripe_webhook_secret="secret")

    message = str(refused.value)
    for problem in ("SUPABASE_URL: not an http(s) URL", "SUPABASE_SERVICE_ROLE_KEY: required",
                    "STRIPE_SECRET_KEY: does not look like a Stripe key",
                    "STRIPE_WEBHOOK_SECRET: does not look like a Stripe key"):
        assert problem in message


def test_empty_optional_settings_are_simply_unset(clean: Path) -> None:
    settings = load_settings(supabase_url="https://abc.supabase.co", supabase_service_role_key="k",
                             stripe_secret_key="", stripe_webhook_secret="")

    assert (settings.stripe_secret_key, settings.stripe_webhook_secret) == (None, None)
