"""`pysvc` command line: the local stack, migrations and the API server."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pysvc import migrate
from pysvc.errors import PysvcError


def _stack(args: argparse.Namespace) -> int:
    from pysvc.local.stack import Stack

    stack = Stack.from_env()
    if args.action == "start":
        info = stack.start()
        print(f"PostgreSQL  {info.database_url}")
        print(f"PostgREST   {info.rest_url}")
        print(f"env file    {stack.env_file}  (`pysvc stack env` prints it)")
    elif args.action == "stop":
        stack.stop()
    elif args.action == "status":
        running = stack.running()
        if running is None:
            print("stopped")
            return 1
        print(f"running: PostgreSQL {running.database_url}, PostgREST {running.rest_url}")
    elif args.action == "env":
        running = stack.running()
        if running is None:
            raise PysvcError("stack not running: `pysvc stack start` first")
        for key, value in running.env().items():
            print(f"{key}={value}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    url = args.db_url or os.environ.get("DATABASE_URL")
    if not url:
        from pysvc.local.stack import Stack

        info = Stack.from_env().running()
        if info is None:
            raise PysvcError("set DATABASE_URL (or --db-url), or start the local stack")
        url = info.database_url
    applied = migrate.apply_pending(url)
    for migration in applied:
        print(f"applied {migration.version} {migration.name}")
    print(f"{len(applied)} migration(s) applied")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from pysvc.api import serve

    serve(host=args.host, port=args.port)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from pysvc.local.dev import dev

    dev(host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pysvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser(
        "stack",
        help="the local Supabase-compatible stack (embedded PostgreSQL + PostgREST)",
        description="Start, stop or inspect the local stack. State lives in $PYSVC_HOME "
        "(default .pysvc/); DATABASE_URL set means: use that database, start no Postgres.",
    )
    stack.add_argument("action", choices=["start", "stop", "status", "env"])
    stack.set_defaults(func=_stack)

    mig = sub.add_parser(
        "migrate",
        help="apply sql/migrations to DATABASE_URL (or the running local stack)",
        description="Apply pending migrations, recorded as the Supabase CLI records them.",
    )
    mig.add_argument("--db-url", help="Postgres URL (default: $DATABASE_URL)")
    mig.set_defaults(func=_migrate)

    for name, func, help_text in (
        ("serve", _serve, "serve the HTTP API against the configured Supabase"),
        ("dev", _dev, "start the local stack and serve the API against it"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PysvcError as exc:
        print(f"pysvc: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
