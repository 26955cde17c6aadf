"""`pysvc` command line: the local stack, migrations, the API server and operators' tools.

Every failure is one line on stderr naming the cause and the fix, with a non-zero exit code;
`--debug` (or PYSVC_DEBUG=1) adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import sys
import textwrap
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from pysvc import __version__
from pysvc.errors import ConfigError

if TYPE_CHECKING:
    from pysvc.deps import Services

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

SERVE_SETTINGS = """\
settings come from the environment and from a .env file in the current directory
(copy .env.example to .env; the environment wins). Required:
  SUPABASE_URL               the project URL (PostgREST at /rest/v1, JWKS at /auth/v1/...),
                             or SUPABASE_REST_URL: a bare PostgREST's base URL
  SUPABASE_SERVICE_ROLE_KEY  the service_role key (the only role that may create sessions)
  SUPABASE_JWT_SECRET        to verify HS256 user tokens, and/or SUPABASE_JWKS_URL (default
                             $SUPABASE_URL/auth/v1/.well-known/jwks.json) for ES256/RS256
Optional: STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET (paid plans), PUBLIC_BASE_URL, APP_BASE_URL,
  LOG_LEVEL and the rest listed, with defaults, in .env.example and docs/operations.md.
Missing or malformed settings stop the server at start-up, all named in one line."""

STACK_ENV = """\
environment:
  PYSVC_HOME           data, logs, secrets, state.json and stack.env (default: .pysvc/)
  PYSVC_DB_PORT        PostgreSQL's port on 127.0.0.1 (default 54332; 0 = any free port, then kept)
  PYSVC_REST_PORT      PostgREST's port (default 54331; 0 = any free port, then kept)
  PYSVC_GATEWAY_PORT   the gateway's port, SUPABASE_URL (default 54321; 0 = any free port, then kept)
  DATABASE_URL         use this PostgreSQL instead of starting one
  PYSVC_PG_BIN         another PostgreSQL's bin/ directory (e.g. /usr/lib/postgresql/15/bin)
  POSTGREST_BIN        a PostgREST binary other than node_modules'
  AUTHENTICATOR_PASSWORD, PGRST_DB_POOL, PGRST_JWT_CACHE_MAX_LIFETIME"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the epilogs' line breaks."""


def _say(message: str) -> None:
    print(message, flush=True)


# -- commands --------------------------------------------------------------------------------

def _stack_start(args: argparse.Namespace) -> int:
    from pysvc.local.stack import Stack

    stack = Stack.from_env(say=_say)
    info = stack.start()
    print(f"PostgreSQL    {info.database_url}")
    print(f"PostgREST     {info.rest_url}  (SUPABASE_REST_URL)")
    if info.supabase_url:
        print(f"SUPABASE_URL  {info.supabase_url}  (/rest/v1, /auth/v1/.well-known/jwks.json)")
    print(f"env file      {stack.env_file}  (`pysvc stack env` prints it)")
    return 0


def _stack_stop(args: argparse.Namespace) -> int:
    from pysvc.local.stack import Stack

    Stack.from_env(say=_say).stop()
    return 0


def _stack_status(args: argparse.Namespace) -> int:
    from pysvc.local.stack import Stack

    parts = Stack.from_env(say=_say).status()
    if all(p.up for p in parts):
        print("running")
    elif not any(p.up for p in parts):
        print("stopped")
    else:
        print("degraded: `pysvc stack start` restarts what is down")
    for part in parts:
        print(f"  {part.name:<11} {'up' if part.up else 'down':<5} {part.detail}")
    return 0 if all(p.up for p in parts) else 1


def _stack_env(args: argparse.Namespace) -> int:
    from pysvc.errors import StackError
    from pysvc.local.stack import Stack

    running = Stack.from_env(say=_say).running()
    if running is None:
        raise StackError("stack not running (or a part of it is down): `pysvc stack start` first")
    for key, value in running.env().items():
        print(f"{key}={value}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from pysvc import migrate
    from pysvc.errors import StackError

    url = args.db_url or os.environ.get("DATABASE_URL")
    if not url:
        from pysvc.local.stack import Stack

        url = Stack.from_env(say=_say).database_url()
        if url is None:
            raise StackError("no database: pass --db-url or set DATABASE_URL, or start the local stack "
                             "(`pysvc stack start`)")
    if args.bootstrap:
        created = migrate.bootstrap(url)
        print("Supabase-compat bootstrap " + ("applied" if created else "skipped: the Supabase roles exist"))
    applied = migrate.apply_pending(url)
    for migration in applied:
        print(f"applied {migration.version} {migration.name}")
    print(f"{len(applied)} migration(s) applied")
    return 0


def check_port_free(host: str, port: int, *, dev: bool = False) -> None:
    """Fail before start-up, in one line, when the API's address cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve --host {host!r} ({exc.strerror}): pass an address such as "
                          "127.0.0.1 or 0.0.0.0") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if dev and exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"cannot listen on {host}:{port} ({exc.strerror}): probably a `pysvc dev` (`make run`) is "
                    f"running already; stop it (Ctrl-C), or use another port: `make run PORT={port + 1}` "
                    f"(or `pysvc dev --port {port + 1}`)",
                ) from exc
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}): pass another --port, "
                              "or stop what holds it") from exc


LOCAL_STACK_HINT = (
    "to serve against the local stack instead, run `pysvc dev` (starts the stack too), or after "
    '`pysvc stack start`: (set -a; eval "$(pysvc stack env)"; pysvc serve)'
)


def _serve(args: argparse.Namespace) -> int:
    from pysvc.api import serve
    from pysvc.settings import load_settings

    check_port_free(args.host, args.port)
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise ConfigError(f"{exc}; {LOCAL_STACK_HINT}") from exc
    serve(host=args.host, port=args.port, settings=settings, workers=args.workers)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from pysvc.local.dev import dev

    check_port_free(args.host, args.port, dev=True)
    dev(host=args.host, port=args.port, stop_stack=args.stop_stack)
    return 0


def duration(text: str) -> timedelta:
    """`90s`, `10m`, `72h`, `3d`."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 10m, 72h or 3d")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def _with_services(work: Callable[[Services], Awaitable[int]]) -> int:
    """Run one piece of operator work with the API's own settings and clients."""
    from pysvc.deps import Services
    from pysvc.settings import load_settings

    async def run() -> int:
        svc = Services.build(load_settings())
        try:
            return await work(svc)
        finally:
            await svc.aclose()

    return asyncio.run(run())


def _sessions_expire(args: argparse.Namespace) -> int:
    async def work(svc: Services) -> int:
        result = await svc.lifecycle.sweep()
        print(f"expired {result.expired} session(s), {result.no_shows} no-show(s) back in the queue, "
              f"{result.timed_out} live session(s) past their time limit ended, "
              f"{result.skipped} busy (next run takes them)")
        sent = await svc.outbox.run_once(max_requests=1000)
        print(f"stripe outbox: {sent['sent']} sent, {sent['retry']} to retry, {sent['failed']} failed")
        return 0

    return _with_services(work)


def limit_setting(text: str) -> tuple[str, int]:
    """`NAME=MINUTES`, NAME one of the session limits."""
    from pysvc.lifecycle import LIMIT_NAMES

    name, _, value = text.partition("=")
    if name not in LIMIT_NAMES:
        raise argparse.ArgumentTypeError(f"{name!r} is not a session limit: one of {', '.join(LIMIT_NAMES)}")
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: the value is a whole number of minutes, e.g. {name}=10")
    return name, int(value)


def _sessions_limits(args: argparse.Namespace) -> int:
    async def work(svc: Services) -> int:
        changes = dict(args.set or [])
        limits = await (svc.lifecycle.set_limits(**changes) if changes else svc.lifecycle.limits())
        for name, value in limits.model_dump().items():
            print(f"{name:<30} {value.isoformat() if name == 'updated_at' else value}")
        return 0

    return _with_services(work)


def _outbox_run(args: argparse.Namespace) -> int:
    async def work(svc: Services) -> int:
        if svc.stripe.client is None:
            raise ConfigError("STRIPE_SECRET_KEY is not set: queued Stripe requests wait until it is")
        sent = await svc.outbox.run_once(max_requests=args.max)
        print(f"stripe outbox: {sent['sent']} sent, {sent['retry']} to retry, {sent['failed']} failed")
        return 1 if sent["failed"] else 0

    return _with_services(work)


def _stripe_reconcile(args: argparse.Namespace) -> int:
    from pysvc import stripe_ops

    async def work(svc: Services) -> int:
        svc.stripe.require_client()
        lines = await stripe_ops.reconcile(svc, args.since)
        print(stripe_ops.table(lines))
        return 1 if any(line.needs_a_person for line in lines) else 0

    return _with_services(work)


def _stripe_replay(args: argparse.Namespace) -> int:
    from pysvc import stripe_ops

    if not (args.event_ids or args.failed or args.stuck):
        raise ConfigError("name events to replay (evt_…), or pass --failed and/or --stuck")

    async def work(svc: Services) -> int:
        lines = await stripe_ops.replay(svc, args.event_ids, failed=args.failed,
                                        stuck_after=args.older_than if args.stuck else None)
        print(stripe_ops.table(lines))
        return 1 if any(line.needs_a_person for line in lines) else 0

    return _with_services(work)


def _payments_audit(args: argparse.Namespace) -> int:
    from pysvc import stripe_ops

    async def work(svc: Services) -> int:
        svc.stripe.require_client()
        lines = await stripe_ops.audit(svc, args.since)
        print(stripe_ops.table(lines) if lines else "the books balance: every paid checkout is one session or one "
              "full refund")
        return 1 if lines else 0

    return _with_services(work)


def _payments_refund(args: argparse.Namespace) -> int:
    from pysvc import stripe_ops

    async def work(svc: Services) -> int:
        svc.stripe.require_client()
        line = await stripe_ops.refund(svc, str(args.payment_id), args.reason)
        print(stripe_ops.table([line]))
        return 1 if line.needs_a_person else 0

    return _with_services(work)


def _event_id(text: str) -> str:
    from pysvc.webhook import EVENT_ID

    if not EVENT_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Stripe event id (evt_…)")
    return text


# -- parser ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of a failure (or set PYSVC_DEBUG=1)")

    parser = argparse.ArgumentParser(
        prog="pysvc", description=__doc__, formatter_class=_Formatter, parents=[common],
        epilog="`pysvc COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"pysvc {__version__}")
    parser.set_defaults(func=None, parser=parser)
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", help="one of:")

    def add(group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str,
            description: str, epilog: str | None = None) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help_text, description=textwrap.fill(description, 88), epilog=epilog,
                             formatter_class=_Formatter, parents=[common])
        p.set_defaults(func=None, parser=p)
        return p

    stack = add(sub, "stack", "the local Supabase-like stack (embedded PostgreSQL, PostgREST, gateway)",
                "Start, stop or inspect the local stack: embedded PostgreSQL, PostgREST 12 and a gateway "
                "serving /rest/v1 and the JWKS like Supabase's. State lives in $PYSVC_HOME (default .pysvc/).",
                STACK_ENV)
    actions = stack.add_subparsers(title="actions", dest="action", metavar="ACTION", help="one of:")
    add(actions, "start", "start every part that is down (all of them the first time)",
        "Start whatever part of the stack is down: PostgreSQL (unless DATABASE_URL is set), the "
        "Supabase-compat bootstrap where needed, pending migrations, PostgREST, the gateway. Parts "
        "that are up are left alone (a healthy PostgreSQL is never restarted); a restarted part gets "
        "the port it had. Returns when PostgREST's schema cache is loaded. Progress goes to stdout.",
        STACK_ENV).set_defaults(func=_stack_start)
    add(actions, "stop", "stop what `start` started, nothing else",
        "Stop the gateway, PostgREST and the embedded PostgreSQL (never a DATABASE_URL database). "
        "Data stays in $PYSVC_HOME/pgdata.").set_defaults(func=_stack_stop)
    add(actions, "status", "each part's state; exit 0 when all are up, else 1",
        "Check each part (process alive, not a zombie, and answering) and print its state: "
        "`running` (exit 0), `degraded` or `stopped` (exit 1).").set_defaults(func=_stack_status)
    add(actions, "env", "print stack.env (DATABASE_URL, SUPABASE_URL, SUPABASE_REST_URL, keys)",
        "Print the running stack's settings as KEY=VALUE lines, e.g. "
        "`set -a; eval \"$(pysvc stack env)\"; set +a`.").set_defaults(func=_stack_env)

    mig = add(sub, "migrate", "apply sql/migrations to DATABASE_URL (or the running local stack)",
              "Apply pending migrations in one transaction (a failure changes nothing), recorded in "
              "supabase_migrations.schema_migrations exactly as `supabase migration up` records them. "
              "A plain PostgreSQL without Supabase's roles and auth schema is refused: add --bootstrap.")
    mig.add_argument("--db-url", metavar="URL",
                     help="PostgreSQL URL, e.g. postgresql://USER:PASSWORD@HOST:5432/postgres "
                          "(default: $DATABASE_URL, else the running local stack)")
    mig.add_argument("--bootstrap", action="store_true",
                     help="first give a plain PostgreSQL Supabase's roles and auth schema "
                          "(sql/local/supabase_compat.sql; skipped where they exist; never needed on Supabase)")
    mig.set_defaults(func=_migrate)

    serve = add(sub, "serve", "serve the HTTP API against the configured Supabase",
                "Serve the HTTP API (uvicorn) against the Supabase project named by the settings.",
                SERVE_SETTINGS)
    dev = add(sub, "dev", "start the local stack and serve the API on it (what `make run` runs)",
              "`pysvc stack start`, a demo customer and a demo mechanic and their tokens, then the API with the "
              "stack's settings. "
              "On Ctrl-C the API stops and the stack keeps running (`pysvc stack stop` stops it), "
              "unless --stop-stack.",
              STACK_ENV)
    for p in (serve, dev):
        p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
        p.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1,
                       help="processes sharing the port: more throughput where cores are idle, the same CPU "
                            "per request (docs/benchmarks.md)")
    serve.set_defaults(func=_serve)
    dev.add_argument("--stop-stack", action="store_true",
                     help="on exit (Ctrl-C), also stop the stack (`pysvc stack stop`)")
    dev.set_defaults(func=_dev)

    sessions = add(sub, "sessions", "operate on sessions (the sweep, its limits)",
                   "Session maintenance that `pysvc serve` (and pg_cron, on Supabase) also does in the background.")
    session_actions = sessions.add_subparsers(title="actions", dest="action", metavar="ACTION", help="one of:")
    expire = add(session_actions, "expire",
                 "one sweep: expiry (with refunds), no-shows back to the queue, live sessions past their time",
                 "One sweep of every session limit (safe next to other sweeps: no double refunds, no waiting): "
                 "pending sessions nobody accepted in time expire and are refunded, waiting sessions their "
                 "mechanic did not start in time go back to the queue, live sessions past their plan's "
                 "duration plus the grace end as completed; then one pass of the Stripe outbox to send the "
                 "refunds. The limits are the database's (`pysvc sessions limits`), the same pg_cron obeys. "
                 "For cron.", SERVE_SETTINGS)
    expire.set_defaults(func=_sessions_expire)
    limits = add(session_actions, "limits", "print the session limits, or change them with --set",
                 "The session limits live in one row of the database (public.session_limits), read by every "
                 "sweep: pg_cron's, `pysvc serve`'s and `pysvc sessions expire`. Without --set, print them; "
                 "with it, change the ones named (the others stay) and print the result. A change holds from "
                 "the next sweep, everywhere.", SERVE_SETTINGS)
    limits.add_argument("--set", type=limit_setting, action="append", metavar="NAME=MINUTES",
                        help="change one limit (repeatable): pending_expiry_minutes (1-10080, default 30), "
                             "urgent_pending_expiry_minutes (1-10080, default 10), no_show_minutes (1-1440, "
                             "default 10), live_grace_minutes (0-1440, default 15)")
    limits.set_defaults(func=_sessions_limits)

    outbox = add(sub, "outbox", "the Stripe outbox (refunds, checkout expiries)",
                 "Stripe requests decided in the database, sent once each.")
    outbox_actions = outbox.add_subparsers(title="actions", dest="action", metavar="ACTION", help="one of:")
    run = add(outbox_actions, "run", "send what is due once (exit 1 if Stripe refused any)",
              "Claim due requests (safe next to other workers), send each to Stripe with its idempotency key, "
              "and record sent / failed (Stripe refused: kept with the reason) / retry (back-off).",
              SERVE_SETTINGS)
    run.add_argument("--max", type=int, default=100, help="at most this many requests in this pass")
    run.set_defaults(func=_outbox_run)

    stripe = add(sub, "stripe", "reconcile with Stripe, replay stored webhook events",
                 "Operator tools for the paid path; both run the webhook's own idempotent code.")
    stripe_actions = stripe.add_subparsers(title="actions", dest="action", metavar="ACTION", help="one of:")
    reconcile = add(stripe_actions, "reconcile",
                    "fulfil every checkout Stripe completed in a window (exit 1 if one needs a person)",
                    "List the Checkout Sessions Stripe completed since --since (all pages) and run the same "
                    "fulfilment as the webhook for each: prints already fulfilled / fulfilled now / refunded / "
                    "failed (with why). Safe while webhooks flow, and to run again.", SERVE_SETTINGS)
    reconcile.add_argument("--since", type=duration, default="72h", metavar="DURATION",
                           help="how far back to look (Stripe lists events for 30 days; checkouts longer)")
    reconcile.set_defaults(func=_stripe_reconcile)
    replay = add(stripe_actions, "replay", "run stored webhook events through the handler again",
                 "Re-run events from the inbox (stripe_events) through the webhook's handler, whatever "
                 "they came to before, and print what each came to now. Exit 1 if one still fails.",
                 SERVE_SETTINGS)
    replay.add_argument("event_ids", nargs="*", type=_event_id, metavar="EVENT_ID", help="events to replay")
    replay.add_argument("--failed", action="store_true", help="every event recorded as failed")
    replay.add_argument("--stuck", action="store_true",
                        help="every event left `received` (never finished) for longer than --older-than")
    replay.add_argument("--older-than", type=duration, default="10m", metavar="DURATION",
                        help="what counts as stuck")
    replay.set_defaults(func=_stripe_replay)

    payments = add(sub, "payments", "audit the money rule, refund a payment",
                   "Every checkout Stripe took money for ends as exactly one session or one full refund.")
    payment_actions = payments.add_subparsers(title="actions", dest="action", metavar="ACTION", help="one of:")
    audit = add(payment_actions, "audit", "check the money rule (exit 1 on any violation)",
                "For every Checkout Stripe lists as paid since --since (all pages) and every payment recorded "
                "here, check that it ended as exactly one session or one full refund (and is not stuck in "
                "between); print each violation with what to do.", SERVE_SETTINGS)
    audit.add_argument("--since", type=duration, default="72h", metavar="DURATION", help="how far back to look")
    audit.set_defaults(func=_payments_audit)
    refund = add(payment_actions, "refund", "refund a payment in full (a failed refund, or one that bought nothing)",
                 "Request a new full refund of the payment (its own idempotency key) and send it now. Refused "
                 "for a payment whose session is pending, live or completed: cancel the session instead.",
                 SERVE_SETTINGS)
    refund.add_argument("payment_id", type=uuid.UUID, metavar="PAYMENT_ID", help="the payment's id (from the audit)")
    refund.add_argument("--reason", default=None, help="kept with the refund request")
    refund.set_defaults(func=_payments_refund)
    return parser


# -- failures --------------------------------------------------------------------------------

def one_line(exc: BaseException) -> str:
    """The cause and the fix, in one line."""
    from pysvc.errors import PysvcError

    if isinstance(exc, PysvcError):
        text = str(exc)
    elif _is_psycopg_error(exc):
        from pysvc import migrate

        url = os.environ.get("DATABASE_URL", "")
        text = migrate.explain_connect_error(exc, url) if "connect" in str(exc).lower() else f"database error: {exc}"
    elif isinstance(exc, PermissionError):
        text = f"permission denied: {exc.filename or exc}: fix its permissions (or set PYSVC_HOME elsewhere)"
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    else:
        text = (f"unexpected {type(exc).__name__}: {exc} (a bug: run with --debug or PYSVC_DEBUG=1 "
                "for the traceback and report it)")
    return " ".join(text.split())


def _is_psycopg_error(exc: BaseException) -> bool:
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.Error)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("PYSVC_DEBUG", "") not in ("", "0")
    if args.func is None:  # `pysvc` or `pysvc stack` alone: its help
        args.parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("pysvc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(f"pysvc: {one_line(exc)}", file=sys.stderr, flush=True)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
