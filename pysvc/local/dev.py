"""`pysvc dev`: the local stack, a demo customer and the API on it (what `make run` starts)."""

from __future__ import annotations

from uuid import UUID

import psycopg

from pysvc.api import serve
from pysvc.errors import ConfigError
from pysvc.local.stack import Stack, mint_key, port_in_use
from pysvc.settings import load_settings


def dev(host: str = "127.0.0.1", port: int = 8000) -> None:
    """The local stack plus the API on it: what `make run` starts."""
    if port_in_use(port):
        raise ConfigError(f"port {port} on {host} is in use: pass --port")
    info = Stack.from_env().start()
    settings = load_settings(
        supabase_rest_url=info.rest_url,
        supabase_service_role_key=info.service_role_key,
        supabase_jwt_secret=info.jwt_secret,
        public_base_url=f"http://{host}:{port}",
    )
    customer = _dev_customer(info.database_url)
    token = mint_key(info.jwt_secret, "authenticated", lifetime=24 * 3600, sub=str(customer), aud="authenticated")
    base = f"http://{host}:{port}"
    print(
        f"\nAPI        {base}  (OpenAPI: {base}/docs)\n"
        f"customer   {customer}\n"
        f"token      {token}\n\n"
        f"try a free intake, then ask for the active session:\n"
        f"  curl -s -X POST {base}/api/intake/start -H 'Authorization: Bearer {token}'"
        f" -H 'Content-Type: application/json' -d '{{\"plan\": \"free\", \"concern\": \"brakes squeal\"}}'\n"
        f"  curl -s {base}/api/sessions/active -H 'Authorization: Bearer {token}'\n",
        flush=True,
    )
    if not settings.stripe_secret_key:
        print("Stripe keys not set: free plans work; paid routes answer 503 (see .env.example)\n", flush=True)
    serve(host, port, settings)


def _dev_customer(database_url: str) -> UUID:
    """A fixed demo customer in the local stack's auth.users, so the printed token works."""
    customer = UUID("00000000-0000-4000-8000-00000000c0de")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into auth.users (id, email) values (%s, 'demo@example.com') on conflict (id) do nothing",
            (customer,),
        )
    return customer
