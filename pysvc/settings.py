"""Settings from the environment and `.env`, checked once at start-up."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pysvc.errors import ConfigError

PLACEHOLDER = re.compile(r"<[^<>]*>")
URL_SETTINGS = ("supabase_url", "supabase_rest_url", "supabase_jwks_url", "stripe_api_base", "public_base_url",
                "app_base_url")
# Settings that moved into the database (public.session_limits), with the limit each became.
RETIRED = {"session_expiry_minutes": "pending_expiry_minutes",
           "urgent_session_expiry_minutes": "urgent_pending_expiry_minutes",
           "session_no_show_minutes": "no_show_minutes", "session_live_grace_minutes": "live_grace_minutes"}
STRIPE_KEYS = {"stripe_secret_key": ("sk_", "rk_"), "stripe_webhook_secret": ("whsec_",)}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    supabase_url: str | None = None
    supabase_rest_url: str | None = None
    supabase_service_role_key: SecretStr
    supabase_jwt_secret: SecretStr | None = None
    supabase_jwks_url: str | None = None
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    # Where the app's pages are (the landing page redirects browsers there); default: this API,
    # which serves minimal pages so that `pysvc dev` works end to end.
    app_base_url: str | None = None
    # Stripe Checkout Sessions close after this many minutes (Stripe's minimum is 30).
    checkout_expiry_minutes: int = Field(default=30, ge=30, le=23 * 60)
    # `pysvc serve` also reconciles completed checkouts of the last N hours every background pass
    # when this is set (off by default: the webhook and the landing page fulfil; reconcile is a net).
    reconcile_hours: int | None = Field(default=None, ge=1, le=24 * 30)
    log_level: str = "INFO"
    # How often `pysvc serve` sweeps sessions (expiry, no-show, live time limit) and sends the Stripe
    # outbox; 0 turns both off (then run `pysvc sessions expire` / `pysvc outbox run` from cron, or
    # pg_cron on Supabase). The limits themselves live in the database: `pysvc sessions limits`.
    background_interval_seconds: float = Field(default=15.0, ge=0)
    # Request bodies over this many bytes are refused with 413 before they are parsed.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_webhook_body_bytes: int = Field(default=1024 * 1024, ge=1024)  # Stripe events can be large
    # Access tokens already verified, remembered until their `exp` (0 turns it off; docs/benchmarks.md).
    token_cache_size: int = Field(default=10_000, ge=0)
    # GET /metrics (Prometheus) wants `Authorization: Bearer <this>` when set; unset, it is open to all.
    metrics_token: SecretStr | None = None
    # Retired: the session limits live in one row of the database, which pg_cron reads too. Refused
    # when set, so that nobody believes they still apply.
    session_expiry_minutes: str | None = Field(default=None, exclude=True, repr=False)
    urgent_session_expiry_minutes: str | None = Field(default=None, exclude=True, repr=False)
    session_no_show_minutes: str | None = Field(default=None, exclude=True, repr=False)
    session_live_grace_minutes: str | None = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _check(cls, values: Any) -> Any:
        """Every problem at once: empty means unset, placeholders are refused, URLs and keys look right."""
        if not isinstance(values, dict):
            return values
        values = {k: v for k, v in values.items() if not (isinstance(v, str) and not v.strip())}
        problems = [f"{name.upper()}: still the placeholder {value!r} (see .env.example)"
                    for name, value in values.items() if isinstance(value, str) and PLACEHOLDER.search(value)]
        problems += [f"{name.upper()}: not an http(s) URL: {values[name]!r}" for name in URL_SETTINGS
                     if isinstance(values.get(name), str) and not values[name].startswith(("http://", "https://"))]
        problems += [f"{name.upper()}: does not look like a Stripe key ({prefixes[0]}…)"
                     for name, prefixes in STRIPE_KEYS.items()
                     if isinstance(values.get(name), str) and not values[name].startswith(prefixes)]
        problems += [f"{name.upper()}: no longer read (the limit lives in the database, for pg_cron too): "
                     f"unset it and run `pysvc sessions limits --set {limit}=MINUTES`"
                     for name, limit in RETIRED.items() if values.get(name) is not None]
        if not values.get("supabase_service_role_key"):
            problems.append("SUPABASE_SERVICE_ROLE_KEY: required (the project's service_role key)")
        if not (values.get("supabase_url") or values.get("supabase_rest_url")):
            problems.append("SUPABASE_URL (or SUPABASE_REST_URL): required")
        if not (values.get("supabase_jwt_secret") or values.get("supabase_jwks_url") or values.get("supabase_url")):
            problems.append("SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL: required to verify user tokens")
        if problems:
            raise ValueError("; ".join(problems))
        return values

    @property
    def app_url(self) -> str:
        return (self.app_base_url or self.public_base_url).rstrip("/")

    @property
    def rest_url(self) -> str:
        """PostgREST's base URL: a bare PostgREST serves at /, Supabase's gateway at /rest/v1."""
        if self.supabase_rest_url:
            return self.supabase_rest_url.rstrip("/")
        assert self.supabase_url is not None
        return self.supabase_url.rstrip("/") + "/rest/v1"

    @property
    def jwks_url(self) -> str | None:
        if self.supabase_jwks_url:
            return self.supabase_jwks_url
        if self.supabase_url:
            return self.supabase_url.rstrip("/") + "/auth/v1/.well-known/jwks.json"
        return None


def load_settings(**overrides: object) -> Settings:
    """Settings or a ConfigError naming every missing or malformed variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(p) for p in error["loc"]).upper()
            problems.append(f"{name}: {error['msg']}" if name else error["msg"].removeprefix("Value error, "))
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc
