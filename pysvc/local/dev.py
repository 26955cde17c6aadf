"""`pysvc dev`: the local stack, a demo customer and mechanic, and the API on it (what `make run` starts)."""

from __future__ import annotations

from uuid import UUID

from pysvc import migrate
from pysvc.api import serve
from pysvc.local.stack import Stack, StackInfo, mint_key
from pysvc.settings import load_settings


def _say(message: str) -> None:
    print(message, flush=True)


def dev(host: str = "127.0.0.1", port: int = 8000, *, stop_stack: bool = False) -> None:
    """The local stack plus the API on it: what `make run` starts.

    On exit (Ctrl-C) the API stops; the stack keeps running and says how to stop it, unless
    `stop_stack`, which stops it too.
    """
    stack = Stack.from_env(say=_say)
    info = stack.start()
    try:
        _serve(info, host, port)
    finally:
        if stop_stack:
            print("\nAPI stopped; stopping the local stack (--stop-stack)", flush=True)
            stack.stop()
        else:
            print(f"\nAPI stopped. The local stack keeps running (SUPABASE_URL {info.supabase_url}, "
                  f"PostgreSQL {info.database_url}): `pysvc stack stop` (or `make clean`) stops it.", flush=True)


def _serve(info: StackInfo, host: str, port: int) -> None:
    jwks = {"supabase_url": info.supabase_url} if info.supabase_url else {}
    settings = load_settings(
        **jwks,
        supabase_rest_url=info.rest_url,
        supabase_service_role_key=info.service_role_key,
        supabase_jwt_secret=info.jwt_secret,
        public_base_url=f"http://{host}:{port}",
    )
    customer, mechanic = _demo_users(info.database_url)
    token = mint_key(info.jwt_secret, "authenticated", lifetime=24 * 3600, sub=str(customer), aud="authenticated")
    mech = mint_key(info.jwt_secret, "authenticated", lifetime=24 * 3600, sub=str(mechanic), aud="authenticated")
    base = f"http://{host}:{port}"
    print(
        f"\nAPI        {base}  (OpenAPI: {base}/docs)\n"
        f"customer   {customer}\n"
        f"mechanic   {mechanic}\n\n"
        f"for the README's walkthrough, in your shell:\n"
        f"  API={base}\n"
        f"  TOKEN={token}\n"
        f"  MECH={mech}\n\n"
        f"try a free intake, then ask for the active session:\n"
        f"  curl -s -X POST {base}/api/intake/start -H 'Authorization: Bearer {token}'"
        f" -H 'Content-Type: application/json' -d '{{\"plan\": \"free\", \"concern\": \"brakes squeal\"}}'\n"
        f"  curl -s {base}/api/sessions/active -H 'Authorization: Bearer {token}'\n",
        flush=True,
    )
    if not settings.stripe_secret_key:
        print("Stripe keys not set: free plans work; paid routes answer 503 (see .env.example)\n", flush=True)
    serve(host, port, settings)


DEMO_CUSTOMER = UUID("00000000-0000-4000-8000-00000000c0de")
DEMO_MECHANIC = UUID("00000000-0000-4000-8000-00000000beef")


def _demo_users(database_url: str) -> tuple[UUID, UUID]:
    """A fixed demo customer and an active (specialist) mechanic, so the printed tokens work."""
    with migrate.connect(database_url) as conn:
        conn.execute(
            "insert into auth.users (id, email) values (%s, 'demo@example.com'), (%s, 'mechanic@example.com')"
            " on conflict (id) do nothing",
            (DEMO_CUSTOMER, DEMO_MECHANIC),
        )
        conn.execute(
            "insert into public.mechanics (user_id, display_name, is_specialist, active)"
            " values (%s, 'Demo Mechanic', true, true) on conflict (user_id) do update set active = true",
            (DEMO_MECHANIC,),
        )
    return DEMO_CUSTOMER, DEMO_MECHANIC
